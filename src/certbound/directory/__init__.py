"""The directory: users, groups and their members, and apps (OAuth clients).

:mod:`~certbound.directory.users`, :mod:`~certbound.directory.groups` and
:mod:`~certbound.directory.apps` hold the library API (the CLI and the admin API call it);
:mod:`~certbound.directory.events` builds their System Log events. docs/directory.md
describes them.
"""
