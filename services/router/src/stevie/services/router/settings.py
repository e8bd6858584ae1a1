"""router settings (``STEVIE_ROUTER_*``)."""

from __future__ import annotations

from stevie.runtime.settings import CommonSettings, SettingsError


class RouterSettings(CommonSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """seed: RNG seed (reproducible choices). prior_precision: λ. exploration: v.
    mc_draws: Monte-Carlo draws of the baseline-challenger guard's action distribution
    (``choose``'s own propensity is the exact win probability, ``stevie.quant.propensity``)."""

    seed: int = 0
    prior_precision: float = 1.0
    exploration: float = 0.5
    mc_draws: int = 2000
    checkpoint_every: int = 10
    """Posterior updates between two checkpoints into the model registry (also on SIGTERM)."""
    max_abs_reward_bps: float = 10_000.0
    """Largest |reward| ``router.update`` accepts (bps); beyond → 400 (a 1e308 reward would lock
    the bandit on one policy)."""
    colour: str = "blue"
    """The deployment stack this process is (``blue`` = current model, ``green`` = candidate;
    ``stevie.services.router.stack``)."""
    green_model: str = ""
    """Green only: serve this registry model id instead of the newest candidate."""
    candidate_poll_s: float = 5.0
    """Green only: how often the registry is asked for a (new) candidate."""
    announce_s: float = 2.0
    """How often the stack announces its colour and model (``subjects.deploy_stack``)."""
    fault_delay_ms: float = 0.0
    """Fault injection: delay every ``decide``/``choose`` by this (to prove the rollback)."""
    fault_error_rate: float = 0.0
    """Fault injection: the share of ``decide``/``choose`` calls that fail (evenly spread, deterministic)."""
    fault_model: str = ""
    """Fault injection applies only while this registry model is served ('' = always)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.checkpoint_every < 1:
            raise SettingsError("checkpoint_every >= 1")
        if not 0 < self.max_abs_reward_bps < 1e12:
            raise SettingsError("max_abs_reward_bps must be in (0, 1e12)")
        if self.prior_precision <= 0 or self.exploration <= 0 or self.mc_draws < 10:
            raise SettingsError("prior_precision > 0, exploration > 0, mc_draws >= 10")
        if self.colour not in ("blue", "green"):
            raise SettingsError(f"colour must be blue or green, got {self.colour!r}")
        if not (self.candidate_poll_s > 0 and self.announce_s > 0):
            raise SettingsError("candidate_poll_s and announce_s must be > 0")
        if not (0 <= self.fault_error_rate <= 1 and 0 <= self.fault_delay_ms <= 60_000):
            raise SettingsError("fault_error_rate must be in [0, 1] and fault_delay_ms in [0, 60000]")
