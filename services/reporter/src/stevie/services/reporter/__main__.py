from stevie.runtime.service import run
from stevie.services.reporter.shell import SPEC

run(SPEC)
