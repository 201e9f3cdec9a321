-- Issue 21 R7: why a video's frames have no thumbnails although the server keeps them (a DICOM whose pixels
-- may carry a name under --phi hash|drop: "burned-in-annotation" or "not-masked"); NULL when kept.
ALTER TABLE videos ADD COLUMN thumbnails_withheld VARCHAR;
