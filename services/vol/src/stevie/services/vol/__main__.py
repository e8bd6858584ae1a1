from stevie.runtime.service import run
from stevie.services.vol.shell import SPEC

run(SPEC)
