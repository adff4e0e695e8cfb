"""The ACME carrier connector, a Rabbitry plugin (entry point `acme` of `rabbitry.carriers`)."""

from acme_carrier._connector import AcmeConnector, AcmeOptions

__all__ = ["AcmeConnector", "AcmeOptions"]
