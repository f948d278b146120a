"""Field datasets: the photos a user chose to save, with their boxes, kept for fine-tuning.

Nothing here runs for a detect request: only an explicit save (POST /v1/datasets/{name}/images,
`weedscan data add-field`) writes. Under `WEEDSCAN_DATA_DIR`:

    catalogue.sqlite          datasets, images (by sha256) and jobs (catalogue.py)
    NAME/data.yaml            Ultralytics' data YAML: crop, weed; the splits that hold photos
    NAME/card.yaml            the dataset card: name, crop, created, licence, counts
    NAME/images/SPLIT/ID.EXT  the photo as it was sent (EXIF kept: boxes are in upright pixels,
                              as OpenCV, Ultralytics and the detector all read it)
    NAME/labels/SPLIT/ID.txt  its boxes, YOLO lines `class cx cy w h` (the labels' source of truth)

Modules: names.py (valid names), labels.py (boxes and YOLO lines), files.py (atomic writes),
catalogue.py (SQLite), store.py (the operations the routes and the CLI call), export.py (zip).
"""
