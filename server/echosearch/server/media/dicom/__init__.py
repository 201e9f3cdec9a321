"""DICOM in one place: the pixels (reader, with its data set and frame modules) and the header (header, phi).

Importing the package or `phi`/`header` pulls in no pydicom: the engine reads the PHI policy and merges header
metadata on a server without the `dicom` extra; the reader modules import pydicom where DICOM arrives.
"""
