from stevie.runtime.service import run
from stevie.services.green_router.shell import SPEC

run(SPEC)
