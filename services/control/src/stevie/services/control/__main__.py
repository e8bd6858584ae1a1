from stevie.runtime.service import run
from stevie.services.control.shell import SPEC

run(SPEC)
