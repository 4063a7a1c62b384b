import sys

if sys.argv[1:2] == ["--search-worker"]:  # the slot search's child process (worker_client)
    from sas_desk.services.fhir.worker import main as worker_main

    sys.exit(worker_main(sys.argv[2:]))

from sas_desk.cli import main

sys.exit(main())
