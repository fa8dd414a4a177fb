"""The real world's side of the ports: RabbitMQ (pika), Redis (redis-py or fakeredis) and SQL
(SQLite or PostgreSQL), plus the one composition root that picks them (``bootstrap``).

Importing this package connects to nothing; connections are made when a port is first used.
"""
