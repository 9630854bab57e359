"""Artifacts and logs in the object store: one key layout, upload grants scoped to an
attempt's prefix, the stores (a local directory served over HTTP, or S3) and the uploader
the producers (agents, the RunPod provider) use.

The path of an attempt's outputs (DESIGN §5, step 4):

    producer ──(grant from the launch)──► object store ◄── results service (HEAD by key)
                                                       ◄── API / UI (read by key)

Events carry object keys only; every reader checks a key against the attempt it belongs to
(``keys.check_attempt_key``) and reads it from the store it is configured with itself.
"""
