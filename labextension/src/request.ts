import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** One exercise of a lab, as labkit.curriculum reports it. */
export interface IExercise {
  name: string;
  status: string; // solved, solved with help, revealed, tried, not started
  tries: number;
}

/** One chapter of the roadmap (GET labkit/api/course). */
export interface IChapter {
  number: number;
  title: string;
  part: string;
  lab: string | null;
  exercises: number;
  solved: number;
  tried: number;
  status: string; // no lab yet, not started, in progress, done
  detail: IExercise[];
  present: boolean;
  updated: boolean;
}

export interface IPart {
  name: string;
  chapters: IChapter[];
}

export interface ICourse {
  parts: IPart[];
  summary: {
    labs: number;
    done: number;
    in_progress: number;
    solved: number;
    exercises: number;
  };
  instructor_folder: boolean;
  store: string;
}

export interface IDoctor {
  settings: { [key: string]: string };
  versions: { [key: string]: string | null };
  checks: { name: string; ok: boolean; detail: string }[];
  ok: boolean;
}

/** The answer to POST labs/NAME/open and labs/NAME/reset. */
export interface ILabAction {
  path: string;
  copied: string[];
  kept: string[];
  beside: string[];
  old: string | null;
  message: string;
}

/**
 * Call labkit's server extension ({base}labkit/api/...), under the server's own auth and XSRF rules.
 * Errors carry the server's message.
 */
export async function requestAPI<T>(
  endPoint: string,
  init: RequestInit = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<T> {
  const url = URLExt.join(settings.baseUrl, 'labkit/api', endPoint);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new ServerConnection.NetworkError(error as TypeError);
  }
  let data: any = await response.text();
  if (data.length > 0) {
    try {
      data = JSON.parse(data);
    } catch (error) {
      // not JSON: keep the text for the message
    }
  }
  if (!response.ok) {
    let message = (data && data.message) || data || response.statusText;
    if (response.status === 404 && !(data && data.message)) {
      message =
        "labkit's server extension is not running in this Jupyter server " +
        '(`jupyter server extension list` should show labkit.serverext enabled)';
    }
    throw new ServerConnection.ResponseError(response, String(message));
  }
  return data as T;
}
