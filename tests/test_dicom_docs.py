"""docs/dicom.md says what the code does: its list of transfer syntaxes is what decodes and what the receiver
accepts (issue 21, D5)."""

from __future__ import annotations

import re

from pydicom import uid as pydicom_uid
from pydicom.pixels import get_decoder

from echosearch.client.dicom_listen import TRANSFER_SYNTAXES
from tests.fixtures.servers import ROOT


def test_the_documented_transfer_syntaxes_are_what_decodes_and_what_the_receiver_accepts():
    """docs/dicom.md's list = every syntax with an installed decoder = the receiver's presentation contexts."""
    text = (ROOT / "docs" / "dicom.md").read_text()
    section = text[text.index("| transfer syntax | UID |") :]
    section = section[: section.index("\n\n")]
    documented = set(re.findall(r"\| (1\.2\.840\.10008\.1\.2[0-9.]*) \|", section))
    syntaxes = [v for v in vars(pydicom_uid).values() if isinstance(v, pydicom_uid.UID) and v.is_transfer_syntax]
    decodable = set()
    for ts in syntaxes:
        try:
            if get_decoder(ts).is_available:
                decodable.add(str(ts))
        except NotImplementedError:
            pass
    assert "1.2.840.10008.1.2.4.201" in decodable  # HTJ2K, which the list once left out
    assert documented == decodable
    assert {str(ts) for ts in TRANSFER_SYNTAXES} == decodable
