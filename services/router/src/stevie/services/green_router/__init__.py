"""The green router stack: the router service's code with ``colour = green`` (``stevie.services.router.stack``)."""
