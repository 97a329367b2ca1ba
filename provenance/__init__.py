"""Provenance: C2PA content credentials (signing, verification, trust anchors), the IPTC vocabulary
and the development keys."""
