import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import {
  IChapter,
  ICourse,
  IDoctor,
  ILabAction,
  IPart,
  requestAPI
} from './request';

/** How often the panel asks for progress while it is visible (ms). */
export const POLL_MS = 4000;

/** How long an action's news stays at the top of the panel (ms). */
const MESSAGE_MS = 30000;

/** What the panel asks its owner to do (the plugin wires these to commands and dialogs). */
export interface IPanelActions {
  open(lab: string): Promise<void>;
  reset(lab: string): Promise<void>;
  openUpdate(lab: string): Promise<void>;
}

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  cls = '',
  text = ''
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (cls) {
    node.className = cls;
  }
  if (text) {
    node.textContent = text;
  }
  return node;
}

function slug(text: string): string {
  return text.replace(/[^a-z0-9]+/gi, '-').toLowerCase();
}

const SEGMENT: { [status: string]: string } = {
  solved: 'lk-seg-solved',
  'solved with help': 'lk-seg-help',
  revealed: 'lk-seg-revealed',
  tried: 'lk-seg-tried'
};

/**
 * The Labkit side panel: the roadmap's parts and chapters, each lab's status and a bar of its exercises, and the
 * machine's state (labkit doctor). It reads GET labkit/api/course every POLL_MS while visible and whenever
 * `refresh()` is called (the plugin calls it when a notebook cell finishes), re-rendering only on change.
 */
export class LabkitPanel extends Widget {
  constructor(actions: IPanelActions) {
    super();
    this._actions = actions;
    this.id = 'labkit-panel';
    this.addClass('lk-panel');
    this.title.caption = 'Labkit: the course and your progress';

    const header = el('div', 'lk-header');
    header.appendChild(el('h2', 'lk-heading', 'Labkit'));
    const refresh = el('button', 'lk-refresh jp-Button jp-mod-minimal', '⟳');
    refresh.title = 'Refresh progress';
    refresh.addEventListener('click', () => void this.refresh(true));
    header.appendChild(refresh);
    this.node.appendChild(header);

    this._summary = el('div', 'lk-summary', 'Loading the course…');
    this._message = el('div', 'lk-message');
    this._message.hidden = true;
    this._course = el('div', 'lk-course');
    this._machine = el('details', 'lk-machine');
    this.node.append(this._summary, this._message, this._course, this._machine);
    this._renderMachine(null, null);
    this._machine.addEventListener('toggle', () => {
      if (this._machine.open && !this._doctor) {
        void this.refreshDoctor();
      }
    });
    this._course.addEventListener('click', event => this._onClick(event));
  }

  /** The latest course answer (null before the first). */
  get course(): ICourse | null {
    return this._data;
  }

  /** Show a line of news at the top of the panel (an action's outcome). */
  say(text: string, kind: 'info' | 'error' = 'info'): void {
    this._message.textContent = text;
    this._message.dataset.kind = kind;
    this._message.hidden = !text;
    // news fades after a while; an error stays until the next action
    window.clearTimeout(this._messageTimer);
    if (text && kind === 'info') {
      this._messageTimer = window.setTimeout(() => this.say(''), MESSAGE_MS);
    }
  }

  /** Ask the server for the course; re-render when anything changed. Concurrent calls share one request. */
  refresh(force = false): Promise<void> {
    if (this._pending && !force) {
      return this._pending;
    }
    const seq = ++this._seq;
    const run = requestAPI<ICourse>('course')
      .then(data => {
        if (seq < this._applied) {
          return; // a later answer is already shown
        }
        this._applied = seq;
        const text = JSON.stringify(data);
        const recovered = this._error !== '';
        this._error = '';
        if (text !== this._last || recovered) {
          this._last = text;
          this._data = data;
          this._render();
          this._changed.forEach(fn => fn(data));
        }
      })
      .catch(reason => {
        const text = `Could not read the course: ${reason.message || reason}`;
        if (text !== this._error) {
          this._error = text;
          this._summary.textContent = text;
          this._summary.dataset.kind = 'error';
        }
      })
      .finally(() => {
        if (this._pending === run) {
          this._pending = null;
        }
      });
    this._pending = run;
    return run;
  }

  /** Ask the server for labkit doctor's state (it caches it for a minute). */
  async refreshDoctor(): Promise<void> {
    try {
      this._doctor = await requestAPI<IDoctor>('doctor');
      this._renderMachine(this._doctor, null);
    } catch (reason) {
      this._renderMachine(null, (reason as Error).message || String(reason));
    }
  }

  /** Called with each new course answer. */
  onChange(fn: (data: ICourse) => void): void {
    this._changed.push(fn);
  }

  protected onAfterShow(msg: Message): void {
    void this.refresh();
    if (!this._doctor) {
      void this.refreshDoctor();
    }
    this._startPolling();
  }

  protected onAfterAttach(msg: Message): void {
    if (this.isVisible) {
      this.onAfterShow(msg);
    }
  }

  protected onBeforeHide(msg: Message): void {
    this._stopPolling();
  }

  protected onBeforeDetach(msg: Message): void {
    this._stopPolling();
  }

  dispose(): void {
    this._stopPolling();
    super.dispose();
  }

  private _startPolling(): void {
    if (this._timer === null) {
      this._timer = window.setInterval(() => {
        if (this.isVisible && document.visibilityState !== 'hidden') {
          void this.refresh();
        }
      }, POLL_MS);
    }
  }

  private _stopPolling(): void {
    if (this._timer !== null) {
      window.clearInterval(this._timer);
      this._timer = null;
    }
  }

  private _onClick(event: MouseEvent): void {
    const target = (event.target as HTMLElement).closest(
      'button[data-action]'
    ) as HTMLButtonElement | null;
    if (!target) {
      return;
    }
    const lab = target.dataset.lab as string;
    const action = target.dataset.action;
    const run =
      action === 'open'
        ? this._actions.open(lab)
        : action === 'reset'
          ? this._actions.reset(lab)
          : this._actions.openUpdate(lab);
    target.disabled = true;
    void run.finally(() => {
      target.disabled = false;
      void this.refresh(true);
    });
  }

  private _render(): void {
    const data = this._data as ICourse;
    const s = data.summary;
    this._summary.dataset.kind = 'info';
    this._summary.textContent =
      `${s.done} of ${s.labs} labs done, ${s.in_progress} in progress · ` +
      `${s.solved} of ${s.exercises} exercises solved`;
    this._summary.title = `Your progress is kept in ${data.store}`;
    this._course.replaceChildren();
    if (data.instructor_folder) {
      this._course.appendChild(
        el(
          'div',
          'lk-note',
          'This server runs on the course’s own labs/ (instructor versions): labs open in place, reset is off.'
        )
      );
    }
    for (const part of data.parts) {
      this._course.appendChild(this._renderPart(part, data.instructor_folder));
    }
  }

  private _renderPart(part: IPart, instructor: boolean): HTMLElement {
    const section = el('section', 'lk-part');
    section.appendChild(el('h3', 'lk-part-name', part.name));
    const list = el('ul', 'lk-chapters');
    for (const ch of part.chapters) {
      list.appendChild(this._renderChapter(ch, instructor));
    }
    section.appendChild(list);
    return section;
  }

  private _renderChapter(ch: IChapter, instructor: boolean): HTMLElement {
    const row = el('li', `lk-chapter lk-status-${slug(ch.status)}`);
    row.dataset.number = String(ch.number);
    row.dataset.status = ch.status;
    const top = el('div', 'lk-chapter-top');
    const num = el('span', 'lk-num', String(ch.number).padStart(2, '0'));
    if (!ch.lab) {
      row.classList.add('lk-nolab');
      top.append(num, el('span', 'lk-title', ch.title));
      top.appendChild(el('span', 'lk-badge', 'no lab yet'));
      row.appendChild(top);
      return row;
    }
    row.dataset.lab = ch.lab;
    row.dataset.solved = String(ch.solved);
    row.dataset.exercises = String(ch.exercises);
    const open = el('button', 'lk-open');
    open.dataset.action = 'open';
    open.dataset.lab = ch.lab;
    open.title = `Open ${ch.lab}.ipynb` + (ch.present ? '' : ' (copied into your folder first)');
    open.append(num, el('span', 'lk-title', ch.title));
    top.append(open, el('span', 'lk-badge', ch.status));
    row.appendChild(top);

    const meta = el('div', 'lk-chapter-meta');
    const bar = el('div', 'lk-bar');
    bar.title = ch.detail.length
      ? ch.detail
          .map(
            d =>
              `${d.name}: ${d.status}` +
              (d.tries ? ` (${d.tries} ${d.tries === 1 ? 'try' : 'tries'})` : '')
          )
          .join('\n')
      : 'no checked exercises';
    for (const d of ch.detail) {
      bar.appendChild(el('span', `lk-seg ${SEGMENT[d.status] || 'lk-seg-none'}`));
    }
    meta.append(bar, el('span', 'lk-count', `${ch.solved}/${ch.exercises}`));
    if (ch.updated) {
      const upd = el('button', 'lk-action lk-update', 'get the course’s update');
      upd.dataset.action = 'update';
      upd.dataset.lab = ch.lab;
      upd.title = `The course has a newer ${ch.lab}: open ${ch.lab}.updated.ipynb (your copy stays as it is)`;
      meta.appendChild(upd);
    }
    if (ch.present && !instructor) {
      const reset = el('button', 'lk-action lk-reset', 'reset');
      reset.dataset.action = 'reset';
      reset.dataset.lab = ch.lab;
      reset.title = `Reset this lab: a fresh copy of ${ch.lab}.ipynb (your copy is kept beside it)`;
      meta.appendChild(reset);
    }
    row.appendChild(meta);
    return row;
  }

  private _renderMachine(doctor: IDoctor | null, error: string | null): void {
    const node = this._machine;
    const wasOpen = node.open;
    node.replaceChildren();
    const summary = el('summary', 'lk-machine-summary');
    node.appendChild(summary);
    node.open = wasOpen;
    if (error) {
      summary.textContent = 'This machine: could not ask labkit doctor';
      node.appendChild(el('div', 'lk-machine-error', error));
      return;
    }
    if (!doctor) {
      summary.textContent = 'This machine';
      node.appendChild(el('div', 'lk-machine-loading', 'Asking labkit doctor…'));
      return;
    }
    const failed = doctor.checks.filter(c => !c.ok);
    node.dataset.ok = String(doctor.ok);
    summary.textContent = doctor.ok
      ? 'This machine: ready, offline assets present'
      : `This machine: ${failed.length} offline asset${failed.length === 1 ? '' : 's'} missing`;
    const table = el('dl', 'lk-machine-facts');
    const add = (key: string, value: string, ok?: boolean) => {
      const dt = el('dt', '', key);
      const dd = el('dd', '', value);
      if (ok !== undefined) {
        dd.className = ok ? 'lk-ok' : 'lk-bad';
      }
      table.append(dt, dd);
    };
    const settings = doctor.settings;
    add('Threads (torch/BLAS)', settings['threads (torch/BLAS)'] ?? '?');
    add('Memory budget for models', settings['memory budget for model loads'] ?? '?');
    add('CPU limit', settings['CPU_LIMIT'] ?? '(unset)');
    add('Memory limit', settings['MEM_LIMIT'] ?? '(unset)');
    add(
      'Offline assets',
      doctor.ok
        ? `all ${doctor.checks.length} present`
        : `missing: ${failed.map(c => c.name).join(', ')}`,
      doctor.ok
    );
    add('labkit', doctor.versions['labkit'] ?? '?');
    node.appendChild(table);
    const checks = el('ul', 'lk-machine-checks');
    for (const c of doctor.checks) {
      const li = el('li', c.ok ? 'lk-ok' : 'lk-bad', `${c.ok ? '✓' : '✗'} ${c.name}`);
      li.title = c.detail;
      checks.appendChild(li);
    }
    node.appendChild(checks);
  }

  private _actions: IPanelActions;
  private _summary: HTMLElement;
  private _message: HTMLElement;
  private _course: HTMLElement;
  private _machine: HTMLDetailsElement;
  private _data: ICourse | null = null;
  private _doctor: IDoctor | null = null;
  private _last = '';
  private _error = '';
  private _pending: Promise<void> | null = null;
  private _timer: number | null = null;
  private _messageTimer = 0;
  private _seq = 0;
  private _applied = 0;
  private _changed: ((data: ICourse) => void)[] = [];
}

export type { ILabAction };
