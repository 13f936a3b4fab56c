"""The installation daemon (`streamdream serve`): metrics, health, reconnects, playlists, reload, control.

``daemon.serve`` runs it; ``http.start_metrics`` gives `streamdream run --metrics` the same
/metrics and /healthz; ``soak.soak`` is `bench --soak`.
"""
