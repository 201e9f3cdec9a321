"""A DICOM header -> VideoMetadata under the PHI policy. Only the attributes named here are ever read out.

The decode worker calls header_metadata on the data set it parsed for the pixels (one parse, outside the
server process); the ingest merges the result with the request's metadata (merge_metadata).

An allow-list, not a deny-list: StudyInstanceUID, the acquisition date/time, SeriesInstanceUID,
SOPInstanceUID, Manufacturer, ManufacturerModelName, frame count and size, and PatientID (through the
policy). Names, birth dates, addresses, accession numbers and every other attribute are never copied.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING

from echosearch.server.media.dicom.phi import PhiPolicy
from echosearch.server.records import VideoMetadata

if TYPE_CHECKING:  # light at run time: the engine merges metadata on servers without pydicom
    from pydicom.dataset import Dataset

log = logging.getLogger(__name__)

TAG_KEYWORDS = ("SeriesInstanceUID", "SOPInstanceUID", "Manufacturer", "ManufacturerModelName")
META_FIELDS = ("study_id", "patient_id", "view", "acquisition_time")


def header_metadata(ds: Dataset, policy: PhiPolicy) -> VideoMetadata:
    """The metadata a parsed DICOM header gives (read by the decode worker), PatientID through `policy`."""
    tags = {k: str(ds.get(k)).strip() for k in TAG_KEYWORDS if str(ds.get(k) or "").strip()}
    for keyword in ("NumberOfFrames", "Rows", "Columns"):
        try:
            tags[keyword] = str(int(ds.get(keyword)))
        except (TypeError, ValueError):  # absent or malformed: the decoder reports a broken image header
            pass
    if "Rows" in tags and "NumberOfFrames" not in tags:
        tags["NumberOfFrames"] = "1"
    return VideoMetadata(
        study_id=str(ds.get("StudyInstanceUID") or "").strip() or None,
        patient_id=policy.patient_id(str(ds.get("PatientID") or "")),
        acquisition_time=acquisition_time(ds),
        tags=tags,
    )


def merge_metadata(from_file: VideoMetadata, explicit: VideoMetadata) -> VideoMetadata:
    """Explicit values (request --meta, a manifest) win over the file's, field by field and tag by tag."""
    fields = {f: getattr(explicit, f) for f in META_FIELDS if getattr(explicit, f) is not None}
    return replace(from_file, tags={**from_file.tags, **explicit.tags}, **fields)


def acquisition_time(ds: Dataset) -> datetime | None:
    """Acquisition DateTime, else Acquisition/Content/Study Date + Time, in UTC (Timezone Offset From UTC if given)."""
    text = str(ds.get("AcquisitionDateTime") or "").strip()
    if not text:
        for date_kw, time_kw in (
            ("AcquisitionDate", "AcquisitionTime"),
            ("ContentDate", "ContentTime"),
            ("StudyDate", "StudyTime"),
        ):
            date = str(ds.get(date_kw) or "").strip()
            if date:
                text = date + str(ds.get(time_kw) or "").strip()
                break
    if not text:
        return None
    return _parse_dt(text, str(ds.get("TimezoneOffsetFromUTC") or "").strip())


def _parse_dt(text: str, offset: str) -> datetime | None:
    """DICOM DT (YYYYMMDDHHMMSS.FFFFFF&ZZXX, any precision) -> aware UTC datetime; None when malformed."""
    zone = None
    for sign in "+-":
        if sign in text[8:]:
            text, _, zone = text.rpartition(sign)
            zone = sign + zone
            break
    zone = zone or offset or None
    main, _, frac = text.partition(".")
    if len(main) < 8 or not main.isdigit():
        log.warning("ignoring a malformed DICOM acquisition date/time")
        return None
    main = main.ljust(14, "0")[:14]
    if main[4:8] == "0000":  # year only
        main = main[:4] + "0101" + main[8:]
    try:
        dt = datetime.strptime(main, "%Y%m%d%H%M%S")
        if frac.isdigit():
            dt = dt.replace(microsecond=int(frac.ljust(6, "0")[:6]))
        tz = UTC
        if zone and len(zone) == 5 and zone[1:].isdigit():
            minutes = int(zone[1:3]) * 60 + int(zone[3:5])
            tz = timezone(timedelta(minutes=minutes if zone[0] == "+" else -minutes))
    except ValueError:
        log.warning("ignoring a malformed DICOM acquisition date/time")
        return None
    return dt.replace(tzinfo=tz).astimezone(UTC)
