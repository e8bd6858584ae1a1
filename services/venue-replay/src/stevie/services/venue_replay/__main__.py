from stevie.runtime.service import run
from stevie.services.venue_replay.shell import SPEC

run(SPEC)
