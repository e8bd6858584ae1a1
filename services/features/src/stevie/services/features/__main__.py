from stevie.runtime.service import run
from stevie.services.features.shell import SPEC

run(SPEC)
