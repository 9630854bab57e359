"""The submission service's settings: one typed object, built in ``__main__`` and passed down.

Every field can be set from the environment as ``TOUCHSTONE_<FIELD>``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from touchstone.shared.objects.config import ObjectStoreSettings

PRIVATE_NETWORKS: tuple[str, ...] = (
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "::/128",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
)


class SubmissionSettings(ObjectStoreSettings):
    """Settings of the HTTP API (it serves artifacts and logs from the object store, and with the
    local store takes producers' uploads at ``/objects``)."""

    host: str = Field("127.0.0.1", description="Address the HTTP API listens on.")
    port: int = Field(8080, ge=0, le=65535, description="Port the HTTP API listens on (0: any free port).")
    public_url: str = Field(
        "",
        description="The address clients use; only for log lines and printed hints.",
    )
    admin_token: SecretStr | None = Field(
        None,
        description="The bootstrap admin API token (TOUCHSTONE_ADMIN_TOKEN). When unset, one is "
        "generated on first start, printed, and kept in data_dir/admin-token.",
    )
    allow_local_sources: bool = Field(
        False,
        description="Accept local paths and loopback/private-network git URLs (an embedded "
        "`touchstone up` on loopback only; off in production).",
    )
    denied_networks: list[str] = Field(
        default_factory=lambda: list(PRIVATE_NETWORKS),
        description="CIDR ranges a git URL's host may not be in (loopback, link-local, private).",
    )
    denied_hosts: list[str] = Field(
        default_factory=lambda: [
            "localhost",
            "*.localhost",
            "*.local",
            "*.internal",
            "metadata.google.internal",
        ],
        description="Host names a git URL may not name; '*.' matches any subdomain.",
    )
    max_body_bytes: int = Field(65_536, ge=1024, description="Largest request body accepted (larger: 413).")
    max_submissions_per_hour: int = Field(
        20, ge=1, description="New submissions one user may create per hour (more: 429 with Retry-After)."
    )
    max_concurrent_validations: int = Field(
        3, ge=1, description="Submissions of one user validating at once (more: 429 with Retry-After)."
    )
    oidc_jwks_url: str = Field("", description="JWKS of the OIDC issuer; empty turns JWT sign-in off.")
    oidc_issuer: str = Field("", description="The `iss` every JWT must carry.")
    oidc_audience: str = Field("", description="The `aud` (or Cognito `client_id`) every JWT must carry.")
    oidc_algorithms: list[str] = Field(
        default_factory=lambda: ["RS256"],
        description="Signature algorithms accepted (never 'none' or HS*).",
    )
    oidc_groups_claim: str = Field("cognito:groups", description="The claim that lists the user's groups.")
    oidc_user_group: str = Field("touchstone_user", description="Group that grants the user role.")
    oidc_admin_group: str = Field("touchstone_admin", description="Group that grants the admin role.")
    oidc_username_claim: str = Field(
        "cognito:username",
        description="The one claim that names the user: one the user cannot edit at the identity provider "
        "(Cognito: cognito:username; others: sub). A token without it is refused.",
    )
    oidc_user_prefix: str = Field(
        "sso:",
        pattern=r"^[A-Za-z0-9_.-]*:$",
        description="Put before every SSO user's name. API-token user names cannot hold ':', so an SSO "
        "user can never take the name of an API-token user, nor the other way round.",
    )
    oidc_leeway_s: float = Field(30.0, ge=0, le=300, description="Clock skew allowed on exp/nbf/iat.")
    jwt_cache_s: float = Field(
        10.0,
        ge=0,
        le=300,
        description="How long a verified JWT's principal is reused without verifying its signature "
        "again (never past its exp, nor longer than jwks_max_age_s); a key withdrawn from the JWKS stops "
        "being honoured within this time. 0: verify every request. API tokens need no such cache "
        "(a watched local mirror).",
    )
    jwks_refresh_s: float = Field(
        60.0, ge=0, description="Least time between two JWKS fetches caused by an unknown key id."
    )
    jwks_max_age_s: float = Field(
        600.0, gt=0, description="The JWKS is fetched again at least this often: a key the issuer removed "
        "stops being accepted within this time."
    )
    ui_csrf_key: SecretStr | None = Field(
        None, description="Key of the UI's CSRF tokens, the same for every API replica; unset: one generated "
        "once and kept in the NATS KV bucket {ns}_ui, shared by every replica."
    )
    oidc_client_id: str = Field(
        "",
        description="The web UI's client at the OIDC issuer: with oidc_issuer and oidc_jwks_url set it "
        "turns on 'Sign in with SSO' (authorization code with PKCE); empty: token sign-in only.",
    )
    oidc_client_secret: SecretStr | None = Field(
        None, description="The UI client's secret, for a confidential client (none: a public client, PKCE only)."
    )
    oidc_redirect_url: str = Field(
        "",
        description="The callback registered at the issuer (https://host/ui/oidc/callback); empty: "
        "public_url + /ui/oidc/callback, else the address the browser used.",
    )
    oidc_scopes: list[str] = Field(
        default_factory=lambda: ["openid", "email", "profile"], description="Scopes the UI asks for."
    )
    oidc_discovery_url: str = Field(
        "", description="The issuer's discovery document; empty: oidc_issuer + /.well-known/openid-configuration."
    )
    sse_keepalive_s: float = Field(15.0, gt=0, description="Seconds between keep-alive comments on SSE streams.")
    sse_max_s: float = Field(
        3600.0,
        gt=0,
        description="Seconds an SSE stream lasts before the server ends it (clients reconnect, as "
        "EventSource does), so no connection is held forever and load balancers can rebalance.",
    )
    run_projector: bool = Field(True, description="Run the projector in this process (keeps the read models current).")

    @property
    def sso_enabled(self) -> bool:
        return bool(self.oidc_client_id and self.oidc_issuer and self.oidc_jwks_url)

    @property
    def admin_token_file(self) -> Path:
        return self.data_dir / "admin-token"
