"""DICOM metadata under the PHI policy (phi, metadata). Decoding lives in media/dicom.py; the receiver in the client."""
