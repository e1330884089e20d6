"""The serving layer: batch view (+) real-time view behind an HTTP API (``recomart serve``)."""
