"""Administration of Certbound itself: the admin API tokens (roles come in a later issue)."""
