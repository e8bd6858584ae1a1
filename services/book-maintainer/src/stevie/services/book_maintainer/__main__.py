from stevie.runtime.service import run
from stevie.services.book_maintainer.shell import SPEC

run(SPEC)
