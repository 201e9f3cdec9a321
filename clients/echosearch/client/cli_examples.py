"""The examples each `echosearch COMMAND --help` ends with (kept apart so cli.py stays about parsing)."""

from __future__ import annotations

EXAMPLES: dict[str, str] = {
    "serve": """\
examples:
  echosearch serve                                  # EchoCLIP from Hugging Face (about 606 MB, first start only)
  echosearch serve --model random:echoclip          # no download: EchoCLIP's architecture, random weights (a demo)
  echosearch serve --model local-dir:/models/echo-clip --data /srv/echosearch --host 0.0.0.0""",
    "ingest": """\
examples:
  echosearch ingest /data/echos --meta view=A4C --jobs 4    # a folder, recursively; stored as a/clip.avi ...
  echosearch ingest --manifest studies.csv                  # the files a CSV names, each with its own metadata
  echosearch ingest /data/echos --manifest studies.csv      # files under a folder; each must have a row
  echosearch ingest clip.avi --meta view=PLAX               # already stored? fills in what it lacks, keeps edits
  echosearch ingest clip.avi --meta view=PLAX --update-metadata   # ... and replaces values that differ

manifest CSV: a 'path' column (relative to the CSV's folder) and any of study_id, patient_id, view,
acquisition_time (ISO 8601); every other column becomes a tag. Empty cells are left unset.""",
    "search": """\
examples:
  echosearch search "SEVERE AORTIC STENOSIS." -k 5
  echosearch search "PACEMAKER LEAD" --filter view=A4C --filter view=A2C --filter tag.site=north
  echosearch search "PACEMAKER LEAD" --filter tag.site=north --explain   # also: how the server searched""",
    "similar": """\
examples:
  echosearch similar 42 -k 5 --filter study_id=ST123""",
    "score": """\
examples:
  echosearch score pacemaker --top 100                          # the 100 most likely pacemaker videos
  echosearch score ejection_fraction --bottom 100               # the 100 lowest predicted EF
  echosearch score ejection_fraction --filter view=A4C --json   # every A4C video, JSON lines
  echosearch score pacemaker --ids 1 2 3
  echosearch score --prompt "EF <#>%." --kind regression --range 10:80:5 --name my_ef
  echosearch score --prompt "NO EFFUSION." --prompt "LARGE EFFUSION." --kind categorical \\
      --value 0 --value 2 --label 0=none --label 2=large --name effusion""",
    "tasks": """\
examples:
  echosearch tasks            # name, kind, prompts, answer, source, description; skipped plugins at the end
  echosearch tasks --json""",
    "videos": """\
examples:
  echosearch videos --filter view=A4C --limit 20
  echosearch videos --filter tag.site=north --filter acquired_after=2024-01-01""",
    "video": """\
examples:
  echosearch video 42
  echosearch video 42 --tasks             # every task: similarity and percentile, value with its unit, category
  echosearch video 42 --embeddings --json""",
    "tag": """\
examples:
  echosearch tag 42 43 --meta view=PLAX --meta site=north   # set a field and a tag
  echosearch tag 42 --remove view --remove tag.site         # clear a field, remove a tag""",
    "delete": """\
examples:
  echosearch delete 42 43 44                        # one transaction; each id is reported: deleted, or not found
  echosearch delete --filter tag.site=old --dry-run # how many videos the filter matches; deletes nothing
  echosearch delete --filter tag.site=old --yes     # delete them (asks first on a terminal without --yes)""",
    "check": """\
examples:
  echosearch check --data ./echosearch-data                      # exit 0, or one line per problem and exit 1
  echosearch check --data ./echosearch-data --repair             # rebuild the index, apply migrations, drop orphans
  echosearch check --data ./echosearch-data --purge-thumbnails   # before serving it with --thumbnails off""",
    "backup": """\
examples:
  echosearch backup --out /backups/echosearch-2026-12-04     # a path on the SERVER's machine; the server keeps serving
  echosearch backup --out /backups/nightly --max-mb-per-s 200  # spare the disk for the server's own reads""",
    "restore": """\
examples:
  echosearch restore /backups/echosearch-2026-12-04 --data ./echosearch-restored   # then: echosearch serve --data ...""",
    "export": """\
examples:
  echosearch export out/a4c.parquet --filter view=A4C""",
    "dicom-listen": """\
examples:
  echosearch dicom-listen --ae-title ECHOSEARCH --port 11112 --allow PACS1,CART2
  echosearch dicom-listen --server echo.example.org:50051 --token-file /etc/echosearch/token""",
    "evaluate": """\
examples:
  echosearch evaluate pacemaker --labels labels.csv --out report/
  echosearch evaluate ejection_fraction --labels ef.csv --label-column ef --out report-ef/
  echosearch evaluate pacemaker --labels labels.csv --out report/ --calibrate pacemaker_site_a [--replace]""",
    "delete-task": """\
examples:
  echosearch delete-task pacemaker_site_a""",
    "ui": """\
examples:
  echosearch ui                          # http://127.0.0.1:8080 for the server at ECHOSEARCH_SERVER
  echosearch ui --port 8081 --token-file /etc/echosearch/token
  echosearch ui --host 0.0.0.0 --allowed-host echo.example.org   # other machines, at http://echo.example.org:8080""",
    "info": """\
examples:
  echosearch info --json""",
    "bulk": """\
examples:
  echosearch bulk embed /data/echos --out /data/shards --model random:echoclip     # local Ray on this machine
  echosearch bulk embed s3://archive/echos --out /shared/shards --ray-address auto --manifest studies.csv
  echosearch bulk load /data/shards               # into the running server; re-run to resume""",
}

FILTER_HELP = (
    "filter: id, study_id, patient_id, view (repeat a key for OR), acquired_after/_before, "
    "ingested_after/_before (ISO 8601); tags as tag.KEY=VALUE. An unknown key is an error"
)
