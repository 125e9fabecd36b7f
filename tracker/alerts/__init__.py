"""Alerts: rules turn change events into outbox rows; the Slack sender drains the outbox."""
