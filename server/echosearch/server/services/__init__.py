"""The use cases, one module each, as functions over one `Services` object (Starlette style).

    container.py   Services: builds model, Store, encoder, decode pool, tasks from a ServerConfig; closes them
    ingest.py      upload checks, ingest (decode -> encode -> one catalog transaction), re-ingest metadata, DICOM header
    bulk.py        ImportEmbeddings: a `bulk embed` shard into the store, idempotent by its hash
    videos.py      get, list (page tokens), frame image, metadata update, delete, export
    search.py      search by text / by video, the query cache, thumbnails
    tasks.py       list, get, custom, create, delete and score tasks
    info.py        what GetServerInfo reports
    spool.py       where upload bodies wait on disk; preflight.py: serve's checks before the model loads

Requests are validated here, once (domain rules and the server's limits); rpc/ only maps the wire
format and the layers below (storage, tasks, media) only assert.
"""
