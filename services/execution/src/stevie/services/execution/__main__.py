from stevie.runtime.service import run
from stevie.services.execution.shell import SPEC

run(SPEC)
