from stevie.runtime.service import run
from stevie.services.venues.shell import SPEC

run(SPEC)
