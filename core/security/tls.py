"""TLS from the operator's files (Dkron Pro's flags): HTTPS for the API and TLS for the
RPC port between nodes.

``--cert-file``/``--key-file`` are this node's certificate and key; ``--trusted-ca-file``
verifies peers (and, with ``--client-cert-auth``, clients of the API and other nodes
calling this one); ``--client-crl-file`` revokes client certificates on the API.
Node certificates must name the addresses other nodes dial (an IP SAN for an IP).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

__all__ = ["TlsError", "TlsFiles"]


class TlsError(ValueError):
    """A certificate, key or CA file cannot be used; the message names it."""


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise TlsError(f"cannot read the {what} {path}: {exc.strerror or exc}") from None


@dataclass(frozen=True)
class TlsFiles:
    cert_file: Path | None = None
    key_file: Path | None = None
    trusted_ca_file: Path | None = None
    client_cert_auth: bool = False
    client_crl_file: Path | None = None

    @property
    def enabled(self) -> bool:
        return self.cert_file is not None and self.key_file is not None

    def check(self) -> None:
        """Refuse half a configuration, and files that do not load, before serving."""
        if (self.cert_file is None) != (self.key_file is None):
            raise TlsError("--cert-file and --key-file go together")
        if self.client_cert_auth and self.trusted_ca_file is None:
            raise TlsError("--client-cert-auth needs --trusted-ca-file to verify clients")
        if self.enabled:
            self.http_context()
            self.grpc_server_credentials()

    # -- HTTP ------------------------------------------------------------------------------

    def http_context(self) -> ssl.SSLContext:
        assert self.cert_file is not None and self.key_file is not None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise TlsError(
                f"cannot load --cert-file {self.cert_file} with --key-file {self.key_file}: {exc}"
            ) from None
        if self.trusted_ca_file is not None:
            try:
                context.load_verify_locations(cafile=str(self.trusted_ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise TlsError(
                    f"cannot load --trusted-ca-file {self.trusted_ca_file}: {exc}"
                ) from None
            context.verify_mode = ssl.CERT_REQUIRED if self.client_cert_auth else ssl.CERT_OPTIONAL
        if self.client_crl_file is not None:
            try:
                context.load_verify_locations(cafile=str(self.client_crl_file))
            except (OSError, ssl.SSLError) as exc:
                raise TlsError(
                    f"cannot load --client-crl-file {self.client_crl_file}: {exc}"
                ) from None
            context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
        return context

    # -- gRPC ------------------------------------------------------------------------------

    def _pair(self) -> tuple[bytes, bytes]:
        assert self.cert_file is not None and self.key_file is not None
        return _read(self.key_file, "--key-file"), _read(self.cert_file, "--cert-file")

    def _roots(self) -> bytes | None:
        if self.trusted_ca_file is None:
            return None
        return _read(self.trusted_ca_file, "--trusted-ca-file")

    def grpc_server_credentials(self) -> Any:
        key, cert = self._pair()
        try:
            return grpc.ssl_server_credentials(
                [(key, cert)],
                root_certificates=self._roots() if self.client_cert_auth else None,
                require_client_auth=self.client_cert_auth,
            )
        except (ValueError, RuntimeError) as exc:
            raise TlsError(f"cannot use --cert-file/--key-file for gRPC: {exc}") from None

    def grpc_channel_credentials(self) -> Any:
        """How this node dials others: it verifies them with the trusted CA (or the
        system's roots) and presents its own certificate."""
        key, cert = self._pair()
        return grpc.ssl_channel_credentials(
            root_certificates=self._roots(), private_key=key, certificate_chain=cert
        )
