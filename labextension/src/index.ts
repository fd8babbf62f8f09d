import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  Dialog,
  ICommandPalette,
  Notification,
  showDialog
} from '@jupyterlab/apputils';
import { IDocumentManager } from '@jupyterlab/docmanager';
import { ILauncher } from '@jupyterlab/launcher';
import { NotebookActions } from '@jupyterlab/notebook';

import { labkitIcon } from './icon';
import { LabkitPanel } from './panel';
import { IChapter, ICourse, ILabAction, requestAPI } from './request';

namespace CommandIDs {
  export const openPanel = 'labkit:open-panel';
  export const openLab = 'labkit:open-lab';
  export const refresh = 'labkit:refresh';
}

/** After a cell finishes, wait this long before asking for progress (several cells finishing: one request). */
const AFTER_CELL_MS = 150;

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'labkit:plugin',
  description:
    'The Labkit panel: the course’s chapters and labs, your progress, the machine’s state; launcher cards and commands.',
  autoStart: true,
  optional: [ILayoutRestorer, ILauncher, ICommandPalette, IDocumentManager],
  activate: (
    app: JupyterFrontEnd,
    restorer: ILayoutRestorer | null,
    launcher: ILauncher | null,
    palette: ICommandPalette | null,
    docManager: IDocumentManager | null
  ) => {
    const chapters = new Map<string, IChapter>();

    const openPath = (path: string) =>
      app.commands.execute('docmanager:open', { path, factory: 'Notebook' });

    const open = async (lab: string) => {
      try {
        const reply = await requestAPI<ILabAction>(`labs/${encodeURIComponent(lab)}/open`, {
          method: 'POST'
        });
        await openPath(reply.path);
        if (reply.copied.length) {
          panel.say(`Copied ${reply.path} into your folder.`);
        }
        if (reply.beside.length) {
          const msg = `The course has a newer version of ${lab}: written beside yours as ${reply.beside.join(', ')}. Your copy is unchanged.`;
          panel.say(msg);
          Notification.info(msg, { autoClose: 8000 });
        }
      } catch (reason) {
        const msg = `Could not open ${lab}: ${(reason as Error).message || reason}`;
        panel.say(msg, 'error');
        Notification.error(msg, { autoClose: 8000 });
      }
    };

    const reset = async (lab: string) => {
      const answer = await showDialog({
        title: `Reset ${lab}?`,
        body:
          `A fresh copy of the lab replaces ${lab}.ipynb in your folder. ` +
          'Your current copy is kept beside it (renamed, nothing is deleted).',
        buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Reset this lab' })]
      });
      if (!answer.button.accept) {
        return;
      }
      try {
        const reply = await requestAPI<ILabAction>(`labs/${encodeURIComponent(lab)}/reset`, {
          method: 'POST'
        });
        // an editor showing the lab would still hold the old content: reload it from disk
        const widget = docManager?.findWidget(reply.path);
        if (widget) {
          await widget.context.revert();
        }
        const msg = reply.old
          ? `${lab} reset. Your old copy is kept as ${reply.old}.`
          : `${lab} reset: ${reply.message}`;
        panel.say(msg);
        Notification.success(msg, { autoClose: 10000 });
      } catch (reason) {
        const msg = `Could not reset ${lab}: ${(reason as Error).message || reason}`;
        panel.say(msg, 'error');
        Notification.error(msg, { autoClose: 8000 });
      }
    };

    const openUpdate = async (lab: string) => {
      await openPath(`${lab}.updated.ipynb`);
      panel.say(
        `Opened the course’s update of ${lab} (${lab}.updated.ipynb); your copy ${lab}.ipynb is unchanged.`
      );
    };

    const panel = new LabkitPanel({ open, reset, openUpdate });
    panel.title.icon = labkitIcon;
    app.shell.add(panel, 'left', { rank: 150 });
    if (restorer) {
      restorer.add(panel, 'labkit-panel');
    }

    // ------------------------------------------------------------------ commands
    const labOf = (args: any): string | undefined => {
      if (typeof args.lab === 'string' && args.lab) {
        return args.lab;
      }
      if (args.number !== undefined) {
        const n = Number(args.number);
        return [...chapters.values()].find(c => c.number === n)?.lab ?? undefined;
      }
      return undefined;
    };
    const titleOf = (args: any): string => {
      const lab = labOf(args);
      const ch = lab ? chapters.get(lab) : undefined;
      return ch ? `${String(ch.number).padStart(2, '0')} · ${ch.title}` : lab || 'a lab';
    };

    app.commands.addCommand(CommandIDs.openPanel, {
      label: 'Open the Labkit panel',
      caption: 'The course’s chapters, your progress and the machine’s state',
      icon: labkitIcon,
      execute: () => {
        app.shell.activateById(panel.id);
      }
    });
    app.commands.addCommand(CommandIDs.openLab, {
      label: args => (args.launcher ? titleOf(args) : `Open lab ${titleOf(args)}`),
      caption: args => {
        const lab = labOf(args);
        return lab ? `Open ${lab}.ipynb (copied into your folder first if needed)` : 'Open a lab';
      },
      icon: args => (args.launcher ? labkitIcon : undefined),
      execute: async args => {
        const lab = labOf(args);
        if (!lab) {
          Notification.error(`No lab for ${JSON.stringify(args)}`, { autoClose: 5000 });
          return;
        }
        await open(lab);
        void panel.refresh(true);
      }
    });
    app.commands.addCommand(CommandIDs.refresh, {
      label: 'Refresh the Labkit panel',
      caption: 'Read your progress and the machine’s state again',
      execute: async () => {
        await Promise.all([panel.refresh(true), panel.refreshDoctor()]);
      }
    });
    if (palette) {
      palette.addItem({ command: CommandIDs.openPanel, category: 'Labkit' });
      palette.addItem({ command: CommandIDs.refresh, category: 'Labkit' });
    }

    // the labs' launcher cards and palette items, once the course is known
    let added = false;
    const addLabs = (data: ICourse) => {
      for (const part of data.parts) {
        for (const ch of part.chapters) {
          if (ch.lab) {
            chapters.set(ch.lab, ch);
          }
        }
      }
      if (added) {
        return;
      }
      added = true;
      let rank = 0;
      for (const ch of chapters.values()) {
        launcher?.add({
          command: CommandIDs.openLab,
          category: 'Labkit',
          rank: rank,
          args: { lab: ch.lab, launcher: true }
        });
        palette?.addItem({ command: CommandIDs.openLab, category: 'Labkit', rank, args: { lab: ch.lab } });
        rank += 1;
      }
    };
    panel.onChange(addLabs);
    void app.restored.then(() => panel.refresh());

    // progress moves when a check runs: ask again as soon as a cell finishes (the kernel has written the store)
    let timer: number | null = null;
    NotebookActions.executed.connect(() => {
      if (timer !== null) {
        window.clearTimeout(timer);
      }
      timer = window.setTimeout(() => {
        timer = null;
        if (panel.isVisible) {
          void panel.refresh(true);
        }
      }, AFTER_CELL_MS);
    });
  }
};

export default plugin;
