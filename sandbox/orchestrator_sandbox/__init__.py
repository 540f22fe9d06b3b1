"""The embedded sandbox world: AWS (a moto server), with simulators that give it AWS's
physics, so the whole job can run, stop, resume and roll back without an AWS account.

`world` starts and stops it as a detached process (`server`); the orchestrator itself
only ever sees the standard settings the world writes to `<dir>/env`.
"""
