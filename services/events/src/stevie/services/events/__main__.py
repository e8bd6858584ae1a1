from stevie.runtime.service import run
from stevie.services.events.shell import SPEC

run(SPEC)
