from stevie.runtime.service import run
from stevie.services.adaptive.shell import SPEC

run(SPEC)
