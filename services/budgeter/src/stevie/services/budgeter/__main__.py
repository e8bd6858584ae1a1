from stevie.runtime.service import run
from stevie.services.budgeter.shell import SPEC

run(SPEC)
