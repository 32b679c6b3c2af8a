"""An open model run in this process as a generate backend (`--backend local`); `backend.LocalBackend`."""
