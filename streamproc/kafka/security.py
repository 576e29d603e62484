"""How every Kafka client of the worker and the tools connects: one place for TLS and SASL.

A platform team's Kafka wants ``security.protocol`` SSL, SASL_PLAINTEXT or SASL_SSL,
a SASL mechanism (PLAIN, SCRAM-SHA-256/512) and a CA. Every client we create -- the
Faust app, the runtime's data consumer and dead-letter producer, the snapshot store,
the simulator's producer, the admin clients of ``streamproc.broker`` and
``streamproc.check`` -- takes its connection keywords from :func:`client_config`
(aiokafka) or :func:`faust_credentials` (Faust), so no client can be forgotten.

The password comes from ``STREAMPROC_KAFKA_SASL_PASSWORD`` or, better for mounted
secrets, from the file named by ``STREAMPROC_KAFKA_SASL_PASSWORD_FILE`` (read at
start-up; one trailing newline is dropped).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamproc.settings import Settings

__all__ = ["ConfigError", "KafkaSecurity", "client_config", "faust_credentials"]


class ConfigError(ValueError):
    """A configuration that cannot work; the message says which setting to change."""


@dataclass(frozen=True)
class KafkaSecurity:
    """The security part of a Kafka client's configuration (settings ``kafka_*``)."""

    protocol: str = "PLAINTEXT"
    mechanism: str = ""
    username: str = ""
    password: str = ""
    cafile: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    key_password: str = ""
    check_hostname: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaSecurity:
        """From :class:`streamproc.settings.Settings`; raises :class:`ConfigError`."""
        password = str(settings.kafka_sasl_password)
        pw_file = settings.kafka_sasl_password_file
        if pw_file:
            if password:
                raise ConfigError(
                    "both STREAMPROC_KAFKA_SASL_PASSWORD and STREAMPROC_KAFKA_SASL_PASSWORD_FILE "
                    "are set; keep one"
                )
            try:
                password = Path(pw_file).read_text()
            except OSError as exc:
                raise ConfigError(
                    f"cannot read the SASL password file {pw_file} "
                    f"(STREAMPROC_KAFKA_SASL_PASSWORD_FILE): {exc.strerror}"
                ) from None
            password = password[:-1] if password.endswith("\n") else password
        sec = cls(
            protocol=settings.kafka_security_protocol,
            mechanism=settings.kafka_sasl_mechanism,
            username=settings.kafka_sasl_username,
            password=password,
            cafile=settings.kafka_ssl_cafile,
            certfile=settings.kafka_ssl_certfile,
            keyfile=settings.kafka_ssl_keyfile,
            key_password=settings.kafka_ssl_key_password,
            check_hostname=settings.kafka_ssl_check_hostname,
        )
        sec.validate()
        return sec

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    def validate(self) -> None:
        if self.sasl:
            if not self.mechanism:
                raise ConfigError(
                    f"STREAMPROC_KAFKA_SECURITY_PROTOCOL={self.protocol} needs "
                    "STREAMPROC_KAFKA_SASL_MECHANISM (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)"
                )
            if not self.username or not self.password:
                raise ConfigError(
                    f"SASL {self.mechanism} needs STREAMPROC_KAFKA_SASL_USERNAME and a password "
                    "(STREAMPROC_KAFKA_SASL_PASSWORD or STREAMPROC_KAFKA_SASL_PASSWORD_FILE)"
                )
        elif self.mechanism or self.username:
            raise ConfigError(
                "STREAMPROC_KAFKA_SASL_MECHANISM/USERNAME are set but "
                f"STREAMPROC_KAFKA_SECURITY_PROTOCOL={self.protocol} does not use SASL "
                "(SASL_PLAINTEXT or SASL_SSL)"
            )
        if not self.tls and (self.cafile or self.certfile or self.keyfile):
            raise ConfigError(
                "TLS files are set but STREAMPROC_KAFKA_SECURITY_PROTOCOL="
                f"{self.protocol} does not use TLS (SSL or SASL_SSL)"
            )
        if bool(self.certfile) != bool(self.keyfile):
            raise ConfigError(
                "mutual TLS needs both STREAMPROC_KAFKA_SSL_CERTFILE and "
                "STREAMPROC_KAFKA_SSL_KEYFILE"
            )
        for name, path in (
            ("STREAMPROC_KAFKA_SSL_CAFILE", self.cafile),
            ("STREAMPROC_KAFKA_SSL_CERTFILE", self.certfile),
            ("STREAMPROC_KAFKA_SSL_KEYFILE", self.keyfile),
        ):
            if path and not Path(path).is_file():
                raise ConfigError(f"{name}={path}: no such file")

    def ssl_context(self) -> ssl.SSLContext | None:
        """A client TLS context: the CA (or the system's), the client certificate if any."""
        if not self.tls:
            return None
        try:
            ctx = ssl.create_default_context(cafile=self.cafile)
            if self.certfile and self.keyfile:
                ctx.load_cert_chain(self.certfile, self.keyfile, self.key_password or None)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"cannot load the Kafka TLS files (STREAMPROC_KAFKA_SSL_*): {exc}"
            ) from None
        ctx.check_hostname = self.check_hostname
        return ctx

    def describe(self) -> str:
        """For error messages: how we tried to connect (never the password)."""
        if self.sasl:
            return f"{self.protocol}, SASL {self.mechanism} as user {self.username!r}"
        return self.protocol


PLAINTEXT = KafkaSecurity()


def client_config(security: KafkaSecurity | None) -> dict[str, Any]:
    """Keyword arguments for aiokafka's producer, consumer and admin client."""
    sec = security or PLAINTEXT
    if sec.protocol == "PLAINTEXT":
        return {}
    out: dict[str, Any] = {"security_protocol": sec.protocol}
    ctx = sec.ssl_context()
    if ctx is not None:
        out["ssl_context"] = ctx
    if sec.sasl:
        out["sasl_mechanism"] = sec.mechanism
        out["sasl_plain_username"] = sec.username
        out["sasl_plain_password"] = sec.password
    return out


def faust_credentials(security: KafkaSecurity | None) -> Any:
    """Faust's ``broker_credentials`` for the same connection (None: plaintext)."""
    sec = security or PLAINTEXT
    if sec.protocol == "PLAINTEXT":
        return None
    import faust
    from faust.types.auth import AuthProtocol, SASLMechanism

    ctx = sec.ssl_context()
    if not sec.sasl:
        return faust.SSLCredentials(ctx)
    creds = faust.SASLCredentials(
        username=sec.username,
        password=sec.password,
        ssl_context=ctx,
        mechanism=SASLMechanism(sec.mechanism),
    )
    # Faust infers SASL_SSL from the context; say it explicitly for SASL_PLAINTEXT too.
    creds.protocol = AuthProtocol(sec.protocol)
    return creds
