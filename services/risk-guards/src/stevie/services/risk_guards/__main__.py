from stevie.runtime.service import run
from stevie.services.risk_guards.shell import SPEC

run(SPEC)
