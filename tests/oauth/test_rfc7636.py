"""PKCE S256 (RFC 7636): the appendix B vector, malformed verifiers and challenges, plain."""

from __future__ import annotations

import pytest

from certbound.errors import ReasonCode
from certbound.oauth.errors import OAuthError
from certbound.oauth.rfc7636 import check_challenge, check_verifier, s256, verify_s256

# RFC 7636 appendix B.
VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_appendix_b_vector() -> None:
    assert s256(VERIFIER) == CHALLENGE
    assert verify_s256(VERIFIER, CHALLENGE)


@pytest.mark.parametrize(
    ("verifier", "challenge"),
    [
        (VERIFIER[:-1] + "l", CHALLENGE),  # another verifier
        (VERIFIER, CHALLENGE[:-1] + "N"),  # another challenge
        (VERIFIER, VERIFIER),  # plain: the challenge is the verifier itself
        ("a" * 42, s256("a" * 42)),  # too short, though it hashes right
        ("a" * 129, s256("a" * 129)),  # too long
        ("a" * 42 + "+", s256("a" * 42 + "+")),  # not an unreserved character
        ("é" * 43, CHALLENGE),  # not ASCII
        (VERIFIER, "é" * 43),
    ],
)
def test_mismatch_and_malformed_verifiers_fail(verifier: str, challenge: str) -> None:
    assert verify_s256(verifier, challenge) is False


def test_bounds_of_a_valid_verifier() -> None:
    for verifier in ("A" * 43, "~._-" * 32):
        assert verify_s256(verifier, s256(verifier))


def test_check_challenge_accepts_s256() -> None:
    check_challenge(CHALLENGE, "S256")


@pytest.mark.parametrize(
    ("challenge", "method", "words"),
    [
        ("", "S256", "code_challenge is required"),
        (CHALLENGE, "plain", "must be S256"),
        (CHALLENGE, "", "which means plain"),
        (CHALLENGE, "s256", "must be S256"),
        (CHALLENGE + "A", "S256", "43 base64url"),
        (CHALLENGE[:-1] + "=", "S256", "43 base64url"),
        (CHALLENGE[:-1] + "+", "S256", "43 base64url"),
    ],
)
def test_check_challenge_refuses(challenge: str, method: str, words: str) -> None:
    with pytest.raises(OAuthError) as caught:
        check_challenge(challenge, method)
    error = caught.value
    assert (error.error, error.reason, error.status) == (
        "invalid_request",
        ReasonCode.PKCE_FAILED,
        400,
    )
    assert words in error.description
    assert error.to_dict() == {
        "error": "invalid_request",
        "error_description": error.description,
        "reason": "PKCE_FAILED",
    }


def test_check_verifier() -> None:
    check_verifier(VERIFIER, CHALLENGE)
    cases = [
        (None, "invalid_request", "is required"),
        ("short", "invalid_request", "43 to 128"),
        ("B" * 43, "invalid_grant", "does not match"),
    ]
    for verifier, error, words in cases:
        with pytest.raises(OAuthError) as caught:
            check_verifier(verifier, CHALLENGE)
        assert (caught.value.error, caught.value.reason, caught.value.status) == (
            error,
            ReasonCode.PKCE_FAILED,
            400,
        )
        assert words in caught.value.description


def test_oauth_error_body_and_description_charset() -> None:
    """error_description holds only RFC 6749's characters; an unknown error code is a bug."""
    error = OAuthError("invalid_request", ReasonCode.INVALID_OAUTH_REQUEST, 'a "b" \\ é\n')
    assert error.description == "a 'b' ? ??"
    assert (error.status, error.headers) == (400, {})
    assert error.to_dict()["error_description"] == error.description
    with pytest.raises(ValueError, match="not an RFC 6749 error code"):
        OAuthError("invalid_thing", ReasonCode.INVALID_OAUTH_REQUEST, "x")
