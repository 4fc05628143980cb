"""Management JSON API for client API keys: create one (its secret is shown only then), list,
read, change and revoke them. Shared with the dashboard's key pages."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, field_validator
from quart import Blueprint
from quart_schema import validate_request, validate_response

from control_plane import errors
from control_plane.db.key_store import KeyNameTaken, KeyRecord
from control_plane.state import ControlPlane, current_control_plane
from control_plane.tenancy.secrets import new_secret, secret_digest, visible_prefix

logger = logging.getLogger("paddler.keys")

keys_api = Blueprint("keys_api", __name__)

KEY_NAME_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
LIMIT_FIELDS = (
    "requests_per_minute",
    "tokens_per_minute",
    "max_concurrent",
    "max_buffered",
    "daily_token_budget",
    "monthly_token_budget",
)
LARGEST_LIMIT = 2**31 - 1  # the columns are 32-bit integers on PostgreSQL

Priority = Literal["high", "normal", "low"]
IsoDatetime = Annotated[datetime, PlainSerializer(datetime.isoformat, return_type=str)]


def _limit(least: int, description: str) -> Any:
    return Field(None, ge=least, le=LARGEST_LIMIT, description=f"{description} (null: unlimited)")


class KeySettings(BaseModel):
    """What an operator may set on a key; a field left out of a change stays as it is."""

    model_config = ConfigDict(extra="forbid")

    team: str | None = Field(None, max_length=200, description="free text to group keys by")
    models: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(
        None, min_length=1, max_length=1000, description="models it may use (null: every model)"
    )
    requests_per_minute: int | None = _limit(1, "requests it may start in any 60 s")
    tokens_per_minute: int | None = _limit(1, "prompt and completion tokens in any 60 s")
    max_concurrent: int | None = _limit(1, "requests it may have running or waiting at once")
    max_buffered: int | None = _limit(0, "requests it may have waiting for a free slot")
    daily_token_budget: int | None = _limit(1, "tokens per UTC day")
    monthly_token_budget: int | None = _limit(1, "tokens per UTC calendar month")
    priority: Priority | None = Field(None, description="its buffered requests' class")
    expires_at: datetime | None = Field(None, description="when it stops working (UTC if naive)")
    disabled: bool | None = Field(None, description="refused until enabled again")

    @field_validator("expires_at")
    @classmethod
    def _in_utc(cls, moment: datetime | None) -> datetime | None:
        if moment is None:
            return None
        if moment.tzinfo is None:
            return moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)

    def fields(self) -> dict[str, Any]:
        """The fields set, as the key store takes them (``team`` and ``priority`` never null)."""
        values = self.model_dump(exclude_unset=True, exclude={"name"})
        if values.get("team", "") is None:
            values["team"] = ""
        if "priority" in values and values["priority"] is None:
            values["priority"] = "normal"
        if values.get("disabled", False) is None:
            values["disabled"] = False
        return values


class NewKey(KeySettings):
    name: str = Field(pattern=KEY_NAME_PATTERN, description="letters, digits, '.', '_', '-'")


class KeyView(BaseModel):
    name: str
    team: str
    prefix: str = Field(description="the secret's first characters, to recognise it by")
    models: list[str] | None = Field(description="models it may use (null: every model)")
    requests_per_minute: int | None
    tokens_per_minute: int | None
    max_concurrent: int | None
    max_buffered: int | None
    daily_token_budget: int | None
    monthly_token_budget: int | None
    priority: Priority
    expires_at: IsoDatetime | None
    disabled: bool
    revoked_at: IsoDatetime | None
    created_at: IsoDatetime
    updated_at: IsoDatetime
    status: Literal["active", "disabled", "revoked", "expired"]


class CreatedKey(BaseModel):
    key: KeyView
    secret: str = Field(description="the key itself: shown only in this answer, never again")


class KeyList(BaseModel):
    data: list[KeyView]


def key_status(
    record: KeyRecord, now: datetime
) -> Literal["active", "disabled", "revoked", "expired"]:
    if record.revoked_at is not None:
        return "revoked"
    if record.disabled:
        return "disabled"
    if record.expires_at is not None and record.expires_at <= now:
        return "expired"
    return "active"


def key_view(record: KeyRecord, now: datetime | None = None) -> KeyView:
    return KeyView(
        name=record.name,
        team=record.team,
        prefix=record.prefix,
        models=None if record.models is None else list(record.models),
        **{field: getattr(record, field) for field in LIMIT_FIELDS},
        priority=record.priority,
        expires_at=record.expires_at,
        disabled=record.disabled,
        revoked_at=record.revoked_at,
        created_at=record.created_at,
        updated_at=record.updated_at,
        status=key_status(record, now or datetime.now(UTC)),
    )


def key_not_found(name: str) -> errors.OpenAIError:
    return errors.OpenAIError(404, f"No API key named {name!r}.", code="key_not_found")


async def find_key(state: ControlPlane, name: str) -> KeyRecord:
    record = await state.key_store.get(name)
    if record is None:
        raise key_not_found(name)
    return record


async def create_key(state: ControlPlane, new: NewKey) -> tuple[KeyRecord, str]:
    """Store a new key; its secret is returned here and kept only as a digest."""
    secret = new_secret()
    try:
        record = await state.key_store.create(
            new.name,
            prefix=visible_prefix(secret),
            digest=secret_digest(secret),
            fields=new.fields(),
        )
    except KeyNameTaken:
        raise errors.OpenAIError(
            409, f"An API key named {new.name!r} already exists.", param="name", code="key_exists"
        ) from None
    await state.tenancy.directory.refresh()  # this replica knows at once; others soon
    logger.info("created API key %s (%s…) %s", record.name, record.prefix, _described(new.fields()))
    return record, secret


async def change_key(state: ControlPlane, name: str, changes: KeySettings) -> KeyRecord:
    record = await find_key(state, name)
    if record.revoked_at is not None:
        raise errors.OpenAIError(
            409, f"The API key {name!r} is revoked; make a new one.", code="key_revoked"
        )
    fields = changes.fields()
    if not fields:
        return record
    updated = await state.key_store.update(name, fields)
    if updated is None:
        raise key_not_found(name)
    await state.tenancy.directory.refresh()  # this replica knows at once; others soon
    logger.info("changed API key %s: %s", name, _described(fields))
    return updated


async def revoke_key(state: ControlPlane, name: str) -> KeyRecord:
    """Revoke the key for good (it stays listed); revoking it again changes nothing."""
    record = await find_key(state, name)
    if record.revoked_at is not None:
        return record
    revoked = await state.key_store.revoke(name)
    if revoked is None:
        raise key_not_found(name)
    await state.tenancy.directory.refresh()  # this replica knows at once; others soon
    logger.info("revoked API key %s (%s…)", name, revoked.prefix)
    return revoked


def _described(fields: dict[str, Any]) -> str:
    def shown(value: Any) -> str:
        if value is None:
            return "null"
        return value.isoformat() if isinstance(value, datetime) else str(value)

    return ", ".join(f"{field}={shown(value)}" for field, value in sorted(fields.items()))


@keys_api.post("/api/v1/keys")
@validate_request(NewKey)
@validate_response(CreatedKey, 201)
async def create(data: NewKey) -> tuple[CreatedKey, int]:
    """Create a key; the answer holds its secret, which is never shown again."""
    record, secret = await create_key(current_control_plane(), data)
    return CreatedKey(key=key_view(record), secret=secret), 201


@keys_api.get("/api/v1/keys")
@validate_response(KeyList)
async def list_keys() -> KeyList:
    """Every key, by name, revoked ones too."""
    now = datetime.now(UTC)
    return KeyList(
        data=[key_view(record, now) for record in await current_control_plane().key_store.list()]
    )


@keys_api.get("/api/v1/keys/<name>")
@validate_response(KeyView)
async def read(name: str) -> KeyView:
    return key_view(await find_key(current_control_plane(), name))


@keys_api.patch("/api/v1/keys/<name>")
@validate_request(KeySettings)
@validate_response(KeyView)
async def change(name: str, data: KeySettings) -> KeyView:
    """Change the fields given (null: unlimited, every model); the rest stay as they are."""
    return key_view(await change_key(current_control_plane(), name, data))


@keys_api.post("/api/v1/keys/<name>/revoke")
@validate_response(KeyView)
async def revoke(name: str) -> KeyView:
    """Revoke the key: refused from then on by every replica; it stays listed."""
    return key_view(await revoke_key(current_control_plane(), name))


@keys_api.delete("/api/v1/keys/<name>")
@validate_response(KeyView)
async def delete(name: str) -> KeyView:
    """The same as revoking: keys are never deleted, so their usage keeps its name."""
    return key_view(await revoke_key(current_control_plane(), name))
