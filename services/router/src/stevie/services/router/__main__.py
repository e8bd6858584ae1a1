from stevie.runtime.service import run
from stevie.services.router.shell import SPEC

run(SPEC)
