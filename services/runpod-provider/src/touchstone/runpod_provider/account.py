"""What RunPod's account allows now: the balance level and whether the API key is accepted.

* balance (``check_balance``, every ``balance_interval_s``): low → alarm; below the stop
  threshold → no launches; a create RunPod refuses for the balance (402) stops them too;
* key: a 401 on any call (pod control, the reaper, the catalog, the launch gate) raises an
  alarm and stops launches until a call succeeds again; pods already running are still
  tracked, reaped and terminated. A 403 (this key may not do that) is not a rejected key.

Pod control reports what it runs into through the ``Hooks`` this class implements; the launch
gate reads ``balance`` and ``key_rejected``.
"""

from __future__ import annotations

import logging

from touchstone.shared.errors import AuthError

from . import adapters, domain
from .adapters import Alarms
from .api import ForbiddenError, RunpodApiClient
from .config import RunpodProviderSettings
from .pods import Hooks

log = logging.getLogger(__name__)


class Account(Hooks):
    def __init__(self, settings: RunpodProviderSettings, api: RunpodApiClient, alarms: Alarms) -> None:
        self.settings = settings
        self.api = api
        self.alarms = alarms
        self.balance = domain.BalanceLevel.OK
        self.balance_usd: float | None = None
        self.key_rejected = False

    @property
    def launches_stopped(self) -> str | None:
        """Why no pod may be started now (the balance, the key); none when launches may go."""
        return domain.launches_stopped(self.balance, self.key_rejected)

    async def check_balance(self) -> None:
        try:
            balance = await self.api.get_balance()
        except AuthError as e:
            await self.auth_failed(e)
            raise
        self.auth_ok()
        self.balance_usd = balance.balance
        adapters.BALANCE.set(balance.balance)
        level = domain.balance_level(balance.balance, self.settings.balance_low_usd, self.settings.balance_stop_usd)
        if level is not domain.BalanceLevel.OK:
            stop = " (launches stopped)" if level is domain.BalanceLevel.STOP else ""
            await self.alarms.raise_("low_balance", f"RunPod balance ${balance.balance:.2f}{stop}")
        else:
            self.alarms.clear("low_balance")
        if level != self.balance:
            log.info("RunPod balance level %s -> %s", self.balance.value, level.value)
        self.balance = level
        self.export_metrics()

    def export_metrics(self) -> None:
        """The account's half of the account view as gauges."""
        adapters.KEY_REJECTED.set(1 if self.key_rejected else 0)
        adapters.LAUNCHES_STOPPED.set(1 if self.launches_stopped else 0)
        adapters.BALANCE_LOW.set(self.settings.balance_low_usd)
        adapters.SPEND_LIMIT.set(self.settings.spend_alarm_usd_per_hour)

    # --- what calls to RunPod run into ----------------------------------------------------------

    async def on_key_rejected(self, message: str) -> None:
        self.key_rejected = True
        self.export_metrics()
        await self.alarms.raise_("api_key_rejected", f"RunPod rejected the API key; launches stopped: {message}")

    async def on_payment_required(self, message: str) -> None:
        self.balance = domain.BalanceLevel.STOP
        await self.alarms.raise_("low_balance", f"RunPod refused a pod for the balance: {message}")

    async def auth_failed(self, error: AuthError) -> None:
        """A call was refused: a 401 is a rejected key; a 403 says nothing about the key."""
        if not isinstance(error, ForbiddenError):
            await self.on_key_rejected(str(error))

    def auth_ok(self) -> None:
        """A call went through: the key works (again)."""
        if self.key_rejected:
            log.info("RunPod accepts the API key again; launches resume")
        self.key_rejected = False
        self.alarms.clear("api_key_rejected")
        self.export_metrics()
