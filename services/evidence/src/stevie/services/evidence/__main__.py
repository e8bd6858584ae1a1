from stevie.runtime.service import run
from stevie.services.evidence.shell import SPEC

run(SPEC)
