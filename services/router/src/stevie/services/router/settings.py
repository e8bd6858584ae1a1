"""router settings (``STEVIE_ROUTER_*``)."""

from __future__ import annotations

from stevie.runtime.settings import CommonSettings, SettingsError


class RouterSettings(CommonSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """seed: RNG seed (reproducible choices). prior_precision: λ. exploration: v.
    mc_draws: Monte-Carlo draws for the propensity."""

    seed: int = 0
    prior_precision: float = 1.0
    exploration: float = 0.5
    mc_draws: int = 2000
    checkpoint_every: int = 10
    """Posterior updates between two checkpoints into the model registry (also on SIGTERM)."""
    max_abs_reward_bps: float = 10_000.0
    """Largest |reward| ``router.update`` accepts (bps); beyond → 400 (a 1e308 reward would lock
    the bandit on one policy)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.checkpoint_every < 1:
            raise SettingsError("checkpoint_every >= 1")
        if not 0 < self.max_abs_reward_bps < 1e12:
            raise SettingsError("max_abs_reward_bps must be in (0, 1e12)")
        if self.prior_precision <= 0 or self.exploration <= 0 or self.mc_draws < 10:
            raise SettingsError("prior_precision > 0, exploration > 0, mc_draws >= 10")
