"""The ATM lab routes under /lab: hosted ATMs (create, list, stop), one ATM's state, screen,
devices, journal and receipts, the one fault interface, customer and operator actions, and
scenario runs as jobs. Viewers read; operators act.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Response
from fastapi import Path as PathParam
from fastapi.responses import FileResponse

from config.settings import Settings
from device.sim.api import scenario_jobs
from device.sim.api.lab import Lab, LabAtm, LabAtmSpec, LabError, profile_names
from device.sim.api.lab_schemas import (
    ActionOut,
    AdvanceIn,
    FaultIn,
    FaultListOut,
    FaultOut,
    FaultTargetOut,
    InsertCardIn,
    ItemIn,
    JournalOut,
    LabAtmIn,
    LabAtmOut,
    OperatorAction,
    PressIn,
    ProfilesOut,
    ReceiptsOut,
    ReplenishIn,
    ScenarioRunIn,
    ScenariosOut,
    StepIn,
    WaitIn,
)
from host.api.bank_routes import JOB_ID, job_out
from host.api.job_port import JobInfo, JobQueue
from host.api.operators import OperatorAuth
from host.api.schemas import ErrorOut, JobOut
from host.api.security import AUTH_RESPONSES, require_role

SCENARIO_JOB = "scenario_run"
TerminalPath = Annotated[str, PathParam(pattern=r"^[A-Za-z0-9]{1,8}$", examples=["ATM00001"])]
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "no such lab ATM (or job)"}
}
REFUSED: dict[int | str, dict[str, Any]] = {
    **NOT_FOUND,
    409: {"model": ErrorOut, "description": "the ATM's state does not allow it now"},
}


def lab_error(err: LabError) -> HTTPException:
    """The HTTP answer of a lab refusal; input errors in the validation error's shape."""
    if err.status == 422:
        return HTTPException(
            422, [{"loc": ["body", err.field or "body"], "msg": str(err), "type": "value_error"}]
        )
    return HTTPException(err.status, str(err))


def lab_router(
    lab: Lab, auth: OperatorAuth, jobs: JobQueue, settings: Settings, server_url: str
) -> APIRouter:
    router = APIRouter(prefix="/lab", tags=["lab"], responses=AUTH_RESPONSES)
    viewer = Depends(require_role(auth, "viewer"))
    operator = Depends(require_role(auth, "operator"))

    def find(terminal_id: str) -> LabAtm:
        try:
            return lab.get(terminal_id)
        except LabError as err:
            raise lab_error(err) from None

    def act(terminal_id: str, action: Any) -> ActionOut:
        atm = find(terminal_id)
        try:
            done = action(atm)
        except LabError as err:
            raise lab_error(err) from None
        receipt = None
        if isinstance(done, tuple):
            done, receipt = done
        return ActionOut(done=done, atm=LabAtmOut(**atm.view()), receipt=receipt)

    # ----- ATMs -------------------------------------------------------------------------------

    @router.get("/profiles", response_model=ProfilesOut, dependencies=[viewer])
    def profiles() -> ProfilesOut:
        """The ATM profiles a lab ATM can be made from."""
        return ProfilesOut(profiles=profile_names())

    @router.get("/atms", response_model=list[LabAtmOut], dependencies=[viewer])
    def atms() -> list[LabAtmOut]:
        return [LabAtmOut(**atm.view()) for atm in lab.atms()]

    @router.post(
        "/atms",
        status_code=201,
        response_model=LabAtmOut,
        dependencies=[operator],
        responses={409: {"model": ErrorOut, "description": "running already, or no start"}},
    )
    def create_atm(body: LabAtmIn, response: Response) -> LabAtmOut:
        """Start a simulated ATM from a profile: devices on ptys, controller, host link."""
        spec = LabAtmSpec(
            profile=body.profile,
            host=(body.host.address, body.host.port) if body.host is not None else None,
            virtual_clock=body.clock == "virtual",
            auto_step=body.auto_step,
        )
        try:
            atm = lab.create(spec)
        except LabError as err:
            raise lab_error(err) from None
        response.headers["Location"] = f"/lab/atms/{atm.terminal_id}"
        return LabAtmOut(**atm.view())

    @router.get(
        "/atms/{terminal_id}", response_model=LabAtmOut, dependencies=[viewer], responses=NOT_FOUND
    )
    def atm(terminal_id: TerminalPath) -> LabAtmOut:
        """The controller's state, the screen's text and function-key labels."""
        return LabAtmOut(**find(terminal_id).view())

    @router.delete(
        "/atms/{terminal_id}", status_code=204, dependencies=[operator], responses=NOT_FOUND
    )
    def stop_atm(terminal_id: TerminalPath) -> Response:
        """Stop the ATM: devices, links and host link close; its journal stays on disk."""
        try:
            lab.stop(terminal_id)
        except LabError as err:
            raise lab_error(err) from None
        return Response(status_code=204)

    @router.get(
        "/atms/{terminal_id}/devices",
        response_model=dict[str, dict[str, Any]],
        dependencies=[viewer],
        responses=NOT_FOUND,
    )
    def devices(terminal_id: TerminalPath) -> dict[str, Any]:
        """Each device's status and counters, as the device itself reports them."""
        return find(terminal_id).devices()

    @router.get(
        "/atms/{terminal_id}/journal",
        response_model=JournalOut,
        dependencies=[viewer],
        responses=NOT_FOUND,
    )
    def journal(
        terminal_id: TerminalPath, tail: Annotated[int, Query(ge=1, le=1000)] = 50
    ) -> JournalOut:
        """The newest electronic journal entries (card numbers masked)."""
        return JournalOut(entries=find(terminal_id).journal_tail(tail))  # type: ignore[arg-type]

    @router.get(
        "/atms/{terminal_id}/receipts",
        response_model=ReceiptsOut,
        dependencies=[viewer],
        responses=NOT_FOUND,
    )
    def receipts(terminal_id: TerminalPath) -> ReceiptsOut:
        atm = find(terminal_id)
        return ReceiptsOut(receipts=atm.receipts(), taken=atm.receipts_taken)

    # ----- faults -----------------------------------------------------------------------------

    @router.get(
        "/atms/{terminal_id}/faults/catalogue",
        response_model=list[FaultTargetOut],
        dependencies=[viewer],
        responses=NOT_FOUND,
    )
    def fault_catalogue(terminal_id: TerminalPath) -> list[dict[str, Any]]:
        """Every fault target (devices, links, host), its faults and their parameters."""
        return find(terminal_id).fault_catalogue()

    @router.get(
        "/atms/{terminal_id}/faults",
        response_model=FaultListOut,
        dependencies=[viewer],
        responses=NOT_FOUND,
    )
    def faults(terminal_id: TerminalPath) -> FaultListOut:
        return FaultListOut(faults=[FaultOut(**vars(f)) for f in find(terminal_id).faults()])

    @router.post(
        "/atms/{terminal_id}/faults",
        status_code=201,
        response_model=FaultOut,
        dependencies=[operator],
        responses=REFUSED,
    )
    def inject(terminal_id: TerminalPath, body: FaultIn) -> FaultOut:
        """Arm a fault on a device, a link or the host: once, persistent, or on the Nth command."""
        atm = find(terminal_id)
        try:
            described = atm.inject(body.target, body.fault, body.mode, body.on_command, body.params)
        except LabError as err:
            raise lab_error(err) from None
        return FaultOut(target=body.target, fault=body.fault, description=described)

    @router.delete(
        "/atms/{terminal_id}/faults",
        response_model=FaultListOut,
        dependencies=[operator],
        responses=REFUSED,
    )
    def clear(
        terminal_id: TerminalPath,
        target: Annotated[str | None, Query(pattern=r"^[a-z_]{1,40}(\.link)?$")] = None,
        fault: Annotated[str | None, Query(pattern=r"^[a-z_]{1,40}$")] = None,
    ) -> FaultListOut:
        """Clear one fault, a target's faults, a fault everywhere, or (no filter) everything;
        answers the faults still armed."""
        atm = find(terminal_id)
        try:
            atm.clear(target, fault)
        except LabError as err:
            raise lab_error(err) from None
        return FaultListOut(faults=[FaultOut(**vars(f)) for f in atm.faults()])

    # ----- the customer -----------------------------------------------------------------------

    @router.post(
        "/atms/{terminal_id}/customer/insert-card",
        response_model=ActionOut,
        dependencies=[operator],
        responses=REFUSED,
    )
    def insert_card(terminal_id: TerminalPath, body: InsertCardIn) -> ActionOut:
        """The customer inserts a wallet card (by its name in the wallet)."""
        return act(terminal_id, lambda atm: atm.insert_card(body.card))

    @router.post(
        "/atms/{terminal_id}/customer/press",
        response_model=ActionOut,
        dependencies=[operator],
        responses=REFUSED,
    )
    def press(terminal_id: TerminalPath, body: PressIn) -> ActionOut:
        """The customer presses keys on the PIN pad, in order (digits are never echoed)."""
        return act(terminal_id, lambda atm: atm.press(list(body.keys)))

    @router.post(
        "/atms/{terminal_id}/customer/take",
        response_model=ActionOut,
        dependencies=[operator],
        responses=REFUSED,
    )
    def take(terminal_id: TerminalPath, body: ItemIn) -> ActionOut:
        """The customer takes the card, the cash, or the next receipt (its text comes back)."""
        return act(terminal_id, lambda atm: atm.take(body.item))

    @router.post(
        "/atms/{terminal_id}/customer/leave",
        response_model=ActionOut,
        dependencies=[operator],
        responses=REFUSED,
    )
    def leave(terminal_id: TerminalPath, body: ItemIn) -> ActionOut:
        """The customer walks away from an item: it stays until the ATM's timeout acts."""
        return act(terminal_id, lambda atm: f"{body.item} left where it is")

    @router.post(
        "/atms/{terminal_id}/wait",
        response_model=ActionOut,
        dependencies=[operator],
        responses=REFUSED,
    )
    def wait(terminal_id: TerminalPath, body: WaitIn) -> ActionOut:
        """Run the ATM until it reaches a state (at most 30 s; 409 if it does not)."""
        return act(terminal_id, lambda atm: atm.wait(body.state, body.seconds))

    @router.post(
        "/atms/{terminal_id}/advance",
        response_model=ActionOut,
        dependencies=[operator],
        responses=REFUSED,
    )
    def advance(terminal_id: TerminalPath, body: AdvanceIn) -> ActionOut:
        """Move a virtual-clock ATM's clock (timeouts fire as if that time had passed)."""
        return act(terminal_id, lambda atm: atm.advance(body.seconds))

    @router.post(
        "/atms/{terminal_id}/step",
        response_model=ActionOut,
        dependencies=[operator],
        responses=REFUSED,
    )
    def step(terminal_id: TerminalPath, body: StepIn) -> ActionOut:
        """Run the controller's loop `count` times (each polls the devices once)."""
        return act(terminal_id, lambda atm: atm.step(body.count))

    # ----- the operator -----------------------------------------------------------------------

    @router.post(
        "/atms/{terminal_id}/operator/replenish",
        response_model=ActionOut,
        dependencies=[operator],
        responses=REFUSED,
    )
    def replenish(terminal_id: TerminalPath, body: ReplenishIn) -> ActionOut:
        """Set cassette note counts (supervisor mode); no counts: fill every cassette."""
        return act(terminal_id, lambda atm: atm.operate("replenish", body.cassettes))

    @router.post(
        "/atms/{terminal_id}/operator/{action}",
        response_model=ActionOut,
        dependencies=[operator],
        responses=REFUSED,
    )
    def operate(terminal_id: TerminalPath, action: OperatorAction) -> ActionOut:
        """Out of service or back, supervisor mode in or out, purge the dispenser, remove a
        stuck card, load paper, empty the retain bin."""
        return act(terminal_id, lambda atm: atm.operate(action))

    # ----- scenarios --------------------------------------------------------------------------

    @router.get("/scenarios", response_model=ScenariosOut, dependencies=[viewer])
    def scenarios() -> ScenariosOut:
        """The shipped scenarios (config/scenarios)."""
        return ScenariosOut(scenarios=scenario_jobs.scenario_names())

    @router.post(
        "/scenario-runs",
        status_code=202,
        response_model=JobOut,
        dependencies=[operator],
    )
    def run_scenarios(body: ScenarioRunIn, response: Response) -> JobOut:
        """Run shipped scenarios by name, or one uploaded as YAML: a job to poll."""
        try:
            if body.yaml is not None:
                chosen = [scenario_jobs.parse_upload(body.yaml)]
            else:
                chosen = scenario_jobs.load_named(body.names or [])
        except ValueError as err:  # DataFileError too: the line and the reason
            field = "yaml" if body.yaml is not None else "names"
            raise HTTPException(
                422, [{"loc": ["body", field], "msg": str(err), "type": "value_error"}]
            ) from None
        job = jobs.submit(
            SCENARIO_JOB,
            scenario_jobs.scenario_work(
                chosen,
                server_url=server_url,
                settings=settings,
                seed=body.seed,
                out_dir=settings.atm_sim_home / "api" / "scenario-runs",
            ),
            {"names": body.names, "yaml": body.yaml, "seed": body.seed},
        )
        response.headers["Location"] = f"/lab/scenario-runs/{job.id}"
        return job_out(job)

    def scenario_job(job_id: str) -> JobInfo:
        job = jobs.get(job_id)
        if job is None or job.kind != SCENARIO_JOB:
            raise HTTPException(404, f"no scenario run {job_id}")
        return job

    @router.get(
        "/scenario-runs/{job_id}",
        response_model=JobOut,
        dependencies=[viewer],
        responses=NOT_FOUND,
    )
    def scenario_run(job_id: Annotated[str, PathParam(pattern=JOB_ID)]) -> JobOut:
        """The run: queued, running, succeeded (results in `result`) or failed."""
        return job_out(scenario_job(job_id))

    @router.get(
        "/scenario-runs/{job_id}/junit",
        response_class=FileResponse,
        dependencies=[viewer],
        responses={
            200: {"content": {"application/xml": {"schema": {"type": "string"}}}},
            **NOT_FOUND,
            409: {"model": ErrorOut, "description": "the run has not finished (or failed)"},
        },
    )
    def scenario_junit(job_id: Annotated[str, PathParam(pattern=JOB_ID)]) -> FileResponse:
        """The run's results as JUnit XML."""
        job = scenario_job(job_id)
        path = jobs.file(job.id, scenario_jobs.JUNIT_FILE)
        if job.status != "succeeded" or path is None:
            raise HTTPException(409, f"scenario run {job_id} is {job.status}; poll until done")
        if not path.is_file():
            raise HTTPException(404, f"the JUnit XML of scenario run {job_id} is gone")
        return FileResponse(path, media_type="application/xml", filename="junit.xml")

    return router
