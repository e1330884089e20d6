"""The production topology as real local processes: ``recomart stack up|status|down``.

``topology`` declares the services (and their docker-compose twins); ``runner`` starts, checks and
stops them; ``statsd_bridge`` turns Airflow's StatsD metrics into Prometheus series.
"""
