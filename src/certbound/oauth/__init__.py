"""OAuth 2.0 on the authorization server: one module per spec (``rfcNNNN``), plus the
token signing keys (:mod:`~certbound.oauth.keys`).

Access tokens are RFC 9068 JWTs (:mod:`~certbound.oauth.rfc9068`), certificate-bound per
RFC 8705; discovery is RFC 8414 (:mod:`~certbound.oauth.rfc8414`). The resource-server side
lives in :mod:`certbound.rs`, which imports nothing from this package.
"""
