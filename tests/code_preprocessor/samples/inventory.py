"""Inventory management: stock levels, reservations and reorder rules."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field

from .events import EventBus, publish

log = logging.getLogger(__name__)


class InventoryError(Exception):
    """Raised when a reservation cannot be honoured."""


@dataclass
class Item:
    sku: str
    quantity: int = 0
    tags: list[str] = field(default_factory=list)

    def restock(self, amount: int) -> None:
        """Add ``amount`` units."""
        if amount <= 0:
            raise InventoryError(f"cannot restock {amount}")
        self.quantity += amount


class Warehouse(EventBus, metaclass=type):
    """Holds items and reservations."""

    class Reservation:
        def __init__(self, sku: str, amount: int) -> None:
            self.sku = sku
            self.amount = amount

        def describe(self) -> str:
            return f"{self.amount} x {self.sku}"

    def __init__(self) -> None:
        super().__init__()
        self.items: dict[str, Item] = {}
        self.reservations = defaultdict(list)

    def reserve(self, sku: str, amount: int) -> Reservation:
        item = self.items.get(sku)
        if item is None or item.quantity < amount:
            raise InventoryError(sku)

        def audit(message: str) -> None:
            log.info("audit %s: %s", sku, message)

        item.quantity -= amount
        reservation = self.Reservation(sku, amount)
        self.reservations[sku].append(reservation)
        audit(reservation.describe())
        publish("reserved", reservation)
        return reservation

    @property
    def total(self) -> int:
        return sum(i.quantity for i in self.items.values())


def reorder_rule(threshold: int):
    """Build a predicate telling which items to reorder."""

    def rule(item: Item) -> bool:
        return item.quantity < threshold

    class Report:
        def render(self, items: list[Item]) -> str:
            return ", ".join(i.sku for i in items if rule(i))

    rule.report = Report()
    return rule


async def sync_remote(warehouse: Warehouse, client) -> int:
    count = 0
    async for record in client.stream():
        warehouse.items[record.sku] = Item(record.sku, record.quantity)
        count += 1
    return count
