from stevie.runtime.service import run
from stevie.services.gateway.shell import SPEC

run(SPEC)
