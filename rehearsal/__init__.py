"""Rehearsal mode: the real bot against local stand-ins of Slack and DBbrain, driven from a
terminal chat, so anyone can try killtask with no workspace and no cloud account."""
