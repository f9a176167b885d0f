"""The FastAPI workload: one JSON endpoint with a response model, as a typical API route looks."""

from __future__ import annotations

from fastapi import FastAPI
from pydantic import BaseModel


class Item(BaseModel):
    id: int
    name: str
    price: float
    tags: list[str]


class Listing(BaseModel):
    message: str
    items: list[Item]


ITEMS = [Item(id=i, name=f"item-{i}", price=i * 1.25, tags=["a", "b"]) for i in range(3)]

app = FastAPI()


@app.get("/json", response_model=Listing)
async def listing() -> Listing:
    return Listing(message="Hello, world!", items=ITEMS)
