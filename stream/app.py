"""The Faust app: the web server, the timers, the producer, and the services it runs.

The app is built by a function rather than at import time, because its broker,
group and web port come from the command line (stream/settings.py). What its parts
share at run time is a `Runtime` (stream/runtime.py), which knows nothing of Faust.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import faust
from faust.types.auth import CredentialsT
from faust.web.base import BlueprintManager
from mode import Service

from agents.crm import CrmConsumer
from stream import web
from stream.kafka import client_options
from stream.plan import Plan
from stream.plan_versions import Plans
from stream.runtime import Runtime
from stream.settings import Resolved


class PostgresService(Service):
    """Opens the pool and applies migrations before the consumer reads; closes it last."""

    def __init__(self, runtime: Runtime, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.runtime = runtime

    async def on_start(self) -> None:
        await self.runtime.open_database()

    async def on_stop(self) -> None:
        await self.runtime.close_database()


def broker_credentials(options: Mapping[str, Any]) -> CredentialsT | None:
    """`client_options` (stream/kafka.py) in Faust's form, for its producer (the dead letters).

    Faust hands its aiokafka clients exactly these keyword arguments back
    (faust/transport/drivers/aiokafka.py `credentials_to_aiokafka_auth`): a SASLCredentials
    with an SSL context is SASL_SSL, without one SASL_PLAINTEXT; SSLCredentials is SSL.
    """
    protocol = options["security_protocol"]
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return faust.SSLCredentials(options["ssl_context"])
    return faust.SASLCredentials(username=options["sasl_plain_username"], password=options["sasl_plain_password"],
                                 mechanism=options["sasl_mechanism"], ssl_context=options.get("ssl_context"))


def build_app(settings: Resolved, plan: Plan | Plans) -> tuple[faust.App, Runtime]:
    """The Faust app with the CRM consumer and the web pages registered, and the runtime they share.

    Faust's data directory goes under the data directory, made here (parents too): a worker
    runs from any working directory (SPEC section 11), and Faust would only make its last part.

    The web server (SPEC section 16) binds `settings.web_host` (loopback by default) and serves
    stream/web.py's pages only: Faust's own (/router, /table, /graph, /stats, /assignment,
    /performance, and / itself) are never mounted, and stream/web.py's middleware answers
    404 to any other path and 401 to a page asked for without the token.
    """
    datadir = (settings.data_dir / "faust").resolve()
    datadir.mkdir(parents=True, exist_ok=True)
    exposure = web.Exposure(settings.web_token)
    app = faust.App(
        settings.group_id,
        broker=settings.broker,
        broker_credentials=broker_credentials(client_options(settings.kafka)),
        key_serializer="raw",
        value_serializer="raw",
        autodiscover=False,
        store="memory://",
        datadir=str(datadir),
        web_enabled=settings.web_enabled,
        web_port=settings.web_port,
        web_bind=settings.web_host,  # what the server listens on (Faust's default: every interface)
        web_host=settings.web_host,  # only Faust's idea of its own URL
        # Faust's built-in views, each off by its setting; the blueprints are dropped below as well,
        # since the production index ("/") has no setting.
        web_router_enabled=False,
        web_tables_enabled=False,
        web_stats_enabled=False,
        web_graph_enabled=False,
        web_metrics_enabled=False,
        web_application_options={"middlewares": [exposure.middleware]},
        producer_acks=-1,
    )
    # Faust runs the web server, the timers and the producer; the CRM topics are read by
    # agents/crm.py's batch consumer, so Faust's own consumer, agents and tables must not
    # start (its consumer would join our group with another protocol). A class attribute
    # in Faust, not a setting.
    app.producer_only = True
    runtime = Runtime(settings=settings, plan=plan)
    app.add_dependency(PostgresService(runtime, loop=app.loop, beacon=app.beacon))
    dead_letters = app.topic(settings.topics.dead_letters, key_type=bytes, value_type=bytes)
    consumer = CrmConsumer(runtime, dead_letters, loop=app.loop, beacon=app.beacon)
    app.add_dependency(consumer)  # after Postgres: stopped (its batch committed) before the pool closes
    app.web.blueprints = BlueprintManager()  # no built-in Faust view at all (docstring)
    web.register(app, runtime, exposure)

    @app.timer(5.0)
    async def lag() -> None:
        if consumer.consumer is not None:
            runtime.update_lag(consumer.consumer.highwaters())

    return app, runtime
