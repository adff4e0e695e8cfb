"""A small daemon's config on conf, as another application than Rabbitry's SMS platform writes one:
an image thumbnailer with the runtime's tables and one table of its own.

    [broker] [[pools]] [logging] [retry]   the runtime's tables
    [images]                               Images: quality, formats, a price, a watermark secret

conf's tests load it so that the machinery is tested without the application.
"""

from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from conf import (
    Broker,
    ConfigError,
    Loader,
    Logging,
    Pool,
    Problem,
    Retry,
    Secret,
    Table,
    broker_problems,
    decimal_string_problems,
    entries_problems,
    named_queues,
    pool_problems,
    retry_problems,
    show,
)

__all__ = ["ENVIRONMENT", "LOADER", "Images", "Settings"]


class Images(Table, frozen=True):
    """`[images]`: what the thumbnailer makes."""

    quality: Annotated[int, Meta(ge=1, le=100)] = 85
    formats: Annotated[tuple[Literal["jpeg", "png", "webp"], ...], Meta(min_length=1)] = ("jpeg",)
    price: Decimal = Decimal("0.001")
    watermark: Secret | None = None
    watermark_env: str = ""


class Settings(Table, frozen=True):
    broker: Broker = msgspec.field(default_factory=Broker)
    images: Images = msgspec.field(default_factory=Images)
    pools: tuple[Pool, ...] = ()
    logging: Logging = msgspec.field(default_factory=Logging)
    retry: Retry = msgspec.field(default_factory=Retry)


ENVIRONMENT = {
    "THUMBS_BROKER_URL": ("broker", "url"),
    "THUMBS_QUALITY": ("images", "quality"),
    "THUMBS_LOG_LEVEL": ("logging", "level"),
}


def raw_problems(raw: Mapping[str, object]) -> Iterator[Problem]:
    images = raw.get("images")
    if isinstance(images, Mapping) and "price" in images:
        yield from decimal_string_problems(("images", "price"), images["price"], "0.001")


def prepare(settings: Settings, environ: Mapping[str, str]) -> Settings:
    images = settings.images
    if images.watermark_env:
        if images.watermark_env not in environ:
            raise ConfigError(
                f"images.watermark_env names {show(images.watermark_env)}, which is not set",
                key="images.watermark_env",
            )
        watermark = Secret(environ[images.watermark_env])
        images = msgspec.structs.replace(images, watermark=watermark, watermark_env="")
    return msgspec.structs.replace(settings, images=images, pools=named_queues(settings.pools))


def problems(settings: Settings) -> Iterator[Problem]:
    yield from broker_problems(("broker",), settings.broker)
    formats = settings.images.formats
    if len(set(formats)) < len(formats):
        yield ("images", "formats"), f"must list each format once (got {show(list(formats))})"
    yield from entries_problems(("pools",), settings.pools, pool_problems)
    yield from retry_problems(("retry",), settings.retry)


LOADER = Loader(
    Settings,
    environment=ENVIRONMENT,
    raw_checks=(raw_problems,),
    prepare=prepare,
    checks=(problems,),
)
