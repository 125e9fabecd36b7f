"""Making provider-controlled text safe to print in spreadsheets."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(cell: str) -> str:
    """Neutralise spreadsheet formulas (CSV injection): a cell starting with = + - @ (or a tab or
    CR) that is not a number gets a leading apostrophe. Numbers such as "-5.00%" and the bare
    placeholder "-" cannot run as formulas and stay as they are."""
    if cell and cell != "-" and cell.startswith(FORMULA_PREFIXES) and not _is_number(cell):
        return "'" + cell
    return cell


def _is_number(text: str) -> bool:
    try:
        Decimal(text.rstrip("%"))
    except (InvalidOperation, ValueError):
        return False
    return True
