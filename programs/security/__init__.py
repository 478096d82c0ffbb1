"""Access security (issue 9): login throttling, two-factor authentication,
automatic logoff, access audit, security headers and the audit view.

A Django app of its own (label `security`, no models) so it has a `ready()`
for its signal receivers, an admin module, templates tags and URLs. It sits
at the programs level: it imports programs and nothing above it.
"""
